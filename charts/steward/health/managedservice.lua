-- Argo CD health check for Steward ManagedServices (steward.dev/v1alpha1).
-- argocd-cm key: resource.customizations.health.steward.dev_ManagedService
--
-- Argo CD has no generic condition-based health for custom resources: without
-- this script a ManagedService is Healthy the moment it exists. With it:
--   Progressing  no status yet, status.observedGeneration behind
--                metadata.generation, Reconciling=True (starting, restarting,
--                stopping, applying, back-off before a retry), Ready=False
--                while starting, or a Ready condition from an older generation
--   Healthy      Ready=True, computed for metadata.generation; or ran to
--                completion (Ready reason Completed), like a succeeded Job
--   Degraded     Stalled=True (invalid spec, policy denial, a failure with no
--                retry coming), state error with no retry coming, or running
--                but failing its health checks; the message says why
--   Suspended    spec.adminState inactive (once stopped)
--
-- Only Lua's base library is used: Argo CD runs argocd-cm scripts without the
-- string library.
local hs = {}

local function find(conditions, kind)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function text(value)
  if value == nil then
    return ""
  end
  return tostring(value)
end

-- "Reason: message", or whichever of the two is set.
local function describe(c)
  if c == nil then
    return ""
  end
  local reason, message = text(c.reason), text(c.message)
  if reason ~= "" and message ~= "" then
    return reason .. ": " .. message
  end
  return reason .. message
end

local function join(a, b)
  if a == "" or a == b then
    return b
  end
  if b == "" then
    return a
  end
  return a .. "; " .. b
end

local metadata = obj.metadata or {}
local spec = obj.spec or {}
local status = obj.status
local generation = metadata.generation

if status == nil or status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for Steward to observe the ManagedService"
  return hs
end
if generation ~= nil and status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for Steward to act on generation " .. text(generation)
    .. " (observed: " .. text(status.observedGeneration) .. ")"
  return hs
end

-- A condition counts only when it was computed for the current generation.
local function current(c)
  return c ~= nil and (c.observedGeneration == nil or generation == nil
    or c.observedGeneration == generation)
end
local function isTrue(c)
  return current(c) and c.status == "True"
end

local ready = find(status.conditions, "Ready")
local reconciling = find(status.conditions, "Reconciling")
local stalled = find(status.conditions, "Stalled")
local readyText = ""
if current(ready) and ready.status ~= "True" then
  readyText = describe(ready)
end

if isTrue(stalled) then
  hs.status = "Degraded"
  local why = text(ready ~= nil and ready.message or nil)
  if why == "" then
    why = text(stalled.message)
  end
  if why == "" then
    why = text(status.lastError)
  end
  hs.message = describe({reason = stalled.reason, message = why})
  return hs
end

if spec.adminState == "inactive" then
  if isTrue(reconciling) then
    hs.status = "Progressing"
    hs.message = join(describe(reconciling), readyText)
  else
    hs.status = "Suspended"
    hs.message = join("adminState is inactive", readyText)
  end
  return hs
end

if isTrue(reconciling) then
  hs.status = "Progressing"
  hs.message = join(describe(reconciling), readyText)
  return hs
end

if isTrue(ready) then
  hs.status = "Healthy"
  hs.message = describe(ready)
  if status.endpoint ~= nil and status.endpoint.uri ~= nil then
    hs.message = join(hs.message, "endpoint " .. text(status.endpoint.uri))
  end
  return hs
end

if current(ready) and ready.reason == "Completed" and status.state ~= "error" then
  -- Ran to completion and will not be restarted (like a succeeded Job).
  hs.status = "Healthy"
  hs.message = describe(ready)
  return hs
end

if status.state == "error" then
  if status.nextRestartAt ~= nil then
    hs.status = "Progressing"
    hs.message = join("Restart scheduled at " .. text(status.nextRestartAt), readyText)
  else
    hs.status = "Degraded"
    hs.message = join(readyText, text(status.lastError))
  end
  return hs
end

if status.state == "active" and current(ready) and ready.status == "False" then
  -- Running, but its health checks fail and nothing is being done about it yet.
  hs.status = "Degraded"
  hs.message = readyText
  return hs
end

hs.status = "Progressing"
if ready == nil then
  hs.message = "Waiting for the Ready condition"
elseif not current(ready) then
  hs.message = "Waiting for a Ready condition for generation " .. text(generation)
else
  hs.message = readyText
end
return hs
