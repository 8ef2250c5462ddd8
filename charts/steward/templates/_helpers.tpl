{{/* Chart name, truncated to a DNS label. */}}
{{- define "steward.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: release-chart unless the release name already contains the chart name. */}}
{{- define "steward.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of cluster-scoped objects: unique per release namespace too. */}}
{{- define "steward.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "steward.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "steward.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "steward.selectorLabels" -}}
app.kubernetes.io/name: {{ include "steward.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "steward.labels" -}}
helm.sh/chart: {{ include "steward.chart" . }}
{{ include "steward.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: steward
{{- end -}}

{{- define "steward.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "steward.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "steward.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* "true" when kopf peering is on: asked for, or implied by more than one replica. */}}
{{- define "steward.peering" -}}
{{- if or .Values.peering.enabled (gt (int .Values.replicas) 1) -}}true{{- end -}}
{{- end -}}

{{- define "steward.peeringName" -}}
{{- default (include "steward.fullname" .) .Values.peering.name -}}
{{- end -}}

{{/*
The operator's RBAC rules, the same for a ClusterRole (cluster-wide mode) and
for each watched namespace's Role (namespaced mode). Least privilege, each
verb used by the operator (proven by tests/e2e/test_rbac.py):
*/}}
{{- define "steward.rules" -}}
# kopf lists and watches ManagedServices, and patches them to add/remove the
# steward.dev/finalizer and its steward.dev/* bookkeeping annotations. The
# operator never creates, updates or deletes them, nor writes their spec.
- apiGroups: ["steward.dev"]
  resources: ["managedservices"]
  verbs: ["list", "watch", "patch"]
# Status is written only through the status subresource, as merge patches.
- apiGroups: ["steward.dev"]
  resources: ["managedservices/status"]
  verbs: ["patch"]
# core/v1 Events, aggregated like client-go's recorder: a repeat of the same
# Event patches its count (get/patch by name); never list, watch or delete.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "get", "patch"]
# env valueFrom secretKeyRef / configMapKeyRef and Terraform varsFrom: the
# operator reads the named objects one by one (get, never list or watch).
- apiGroups: [""]
  resources: ["secrets", "configmaps"]
  verbs: ["get"]
# endpoint.expose: Cluster: a selector-less Service per exposed ManagedService and
# its EndpointSlice, by server-side apply (patch; create when new), deleted with the
# resource; Services listed once at start-up and read by name before the first apply
# (one the operator did not create is never touched).
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "create", "patch", "delete"]
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["create", "patch", "delete"]
{{- include "steward.workloadExtraRules" . }}
{{- end -}}

{{/*
What running workloads adds with terraform.*, tenancy.* on: the operator's with
`steward run`, a serving agent's with agent.serve.
*/}}
{{- define "steward.workloadExtraRules" -}}
{{- if .Values.terraform.secretsWrite }}
# terraform.secretsWrite: Terraform's `kubernetes` state backend keeps state in
# a Secret (list finds workspaces, create/update writes, delete on destroy) and
# the operator writes spec.terraform.writeOutputsToSecret (create, then update).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["list", "create", "update", "delete"]
# ... and that backend locks the state with a Lease.
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "create", "update", "delete"]
{{- end }}
{{- if .Values.tenancy.sandbox.enabled }}
# tenancy.sandbox: Terraform's kubernetes backend gets a short-lived token of the
# namespace's own ServiceAccount (TokenRequest), never the operator's; only that name.
- apiGroups: [""]
  resources: ["serviceaccounts/token"]
  resourceNames: [{{ .Values.tenancy.sandbox.terraformServiceAccount | quote }}]
  verbs: ["create"]
{{- end }}
{{- if .Values.tenancy.enforcePolicy }}
# tenancy.enforcePolicy: the policy check reads each served namespace's labels
# (the StewardPolicy namespaceSelector); one by one, never list or watch.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get"]
{{- end }}
{{- end -}}

{{/*
tenancy.enforcePolicy: the operator reads the admin's StewardPolicies before
every start. They are cluster-scoped, so this is a ClusterRole even with
watchNamespaces; read-only, and they hold no secrets.
*/}}
{{- define "steward.policyRules" -}}
- apiGroups: ["steward.dev"]
  resources: ["stewardpolicies"]
  verbs: ["get", "list", "watch"]
{{- end -}}

{{/*
Peering rules: kopf lists and watches the peering objects (to see its peers)
and patches its own one (keep-alives in .status). Only with peering on.
*/}}
{{- define "steward.peeringRules" -}}
- apiGroups: ["kopf.dev"]
  resources: [{{ .resource | quote }}]
  verbs: ["list", "watch"]
- apiGroups: ["kopf.dev"]
  resources: [{{ .resource | quote }}]
  resourceNames: [{{ .name | quote }}]
  verbs: ["patch"]
{{- end -}}

{{/* ---------------------------------------------------------------- the agent DaemonSet */}}
{{- define "steward.agentFullname" -}}
{{- printf "%s-agent" (include "steward.fullname" . | trunc 57 | trimSuffix "-") -}}
{{- end -}}

{{/* Cluster-scoped (and kube-node-lease) names: unique per release namespace too. */}}
{{- define "steward.agentClusterName" -}}
{{- printf "%s-agent" (include "steward.clusterName" .) -}}
{{- end -}}

{{/*
Its own app.kubernetes.io/name, so that the operator Deployment's selector
(name + instance) never matches an agent pod.
*/}}
{{- define "steward.agentSelectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-agent" (include "steward.name" . | trunc 57 | trimSuffix "-") }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: agent
{{- end -}}

{{- define "steward.agentLabels" -}}
helm.sh/chart: {{ include "steward.chart" . }}
{{ include "steward.agentSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: steward
{{- end -}}

{{- define "steward.agentServiceAccountName" -}}
{{- if .Values.agent.serviceAccount.create -}}
{{- default (include "steward.agentFullname" .) .Values.agent.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.agent.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "steward.agentImage" -}}
{{- $repo := default .Values.image.repository .Values.agent.image.repository -}}
{{- $tag := default (default .Chart.AppVersion .Values.image.tag) .Values.agent.image.tag -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}

{{/*
The agent's RBAC, exactly deploy/agent-rbac.yaml's (tests/e2e/test_agent.py runs
an agent with a token of it): its StewardNode and that node's status ...
*/}}
{{- define "steward.agentNodeRules" -}}
# register: create the StewardNode, or take it over (patch its labels); get/list/watch
# to read StewardNodes. spec stays the admin's: the agent never updates or deletes one.
- apiGroups: ["steward.dev"]
  resources: ["stewardnodes"]
  verbs: ["get", "list", "watch", "create", "patch"]
# status only through the status subresource
- apiGroups: ["steward.dev"]
  resources: ["stewardnodes/status"]
  verbs: ["get", "patch", "update"]
{{- end -}}

{{/* ... and its Lease, in the lease namespace only (a Role there). */}}
{{- define "steward.agentLeaseRules" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "create", "update"]
{{- end -}}


{{/* ---------------------------------------------------------------- agent.serve */}}
{{- define "steward.serve" -}}
{{- if and .Values.agent.enabled .Values.agent.serve -}}true{{- end -}}
{{- end -}}

{{/*
A serving agent's rules, exactly deploy/agent-serve-rbac.yaml's (namespaced ones;
the reviews are cluster-scoped, below), plus steward.workloadExtraRules.
*/}}
{{- define "steward.agentServeRules" -}}
# kopf lists and watches the node's ManagedServices (a field selector on
# status.placement.nodeName) and patches them (its finalizer, annotations); get: the
# read before a release. Status only through the subresource, presenting the epoch.
- apiGroups: ["steward.dev"]
  resources: ["managedservices"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["steward.dev"]
  resources: ["managedservices/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "get", "patch"]
# env valueFrom and Terraform varsFrom, one by one.
- apiGroups: [""]
  resources: ["secrets", "configmaps"]
  verbs: ["get"]
{{- include "steward.workloadExtraRules" . }}
{{- end -}}

{{/* The log endpoint authenticates and authorizes each reader through the apiserver. */}}
{{- define "steward.agentReviewRules" -}}
- apiGroups: ["authentication.k8s.io"]
  resources: ["tokenreviews"]
  verbs: ["create"]
- apiGroups: ["authorization.k8s.io"]
  resources: ["subjectaccessreviews"]
  verbs: ["create"]
{{- end -}}

{{/*
`steward controller`'s rules, exactly deploy/controller-rbac.yaml's: the namespaced
ones here (a Role per watched namespace, or the ClusterRole) ...
*/}}
{{- define "steward.controllerRules" -}}
# ManagedServices: read, and patch only to remove the agents' finalizer from one
# no host runs; status: the binding (status.placement) and the Scheduled condition.
- apiGroups: ["steward.dev"]
  resources: ["managedservices"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["steward.dev"]
  resources: ["managedservices/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "get", "patch"]
# endpoint.expose: Cluster: the selector-less Service and its EndpointSlice.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "create", "patch", "delete"]
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["create", "patch", "delete"]
{{- end -}}

{{/* ... and the cluster-scoped hosts (a lost one: Ready=Unknown, NodeLost, on its status). */}}
{{- define "steward.controllerNodeRules" -}}
- apiGroups: ["steward.dev"]
  resources: ["stewardnodes"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["steward.dev"]
  resources: ["stewardnodes/status"]
  verbs: ["patch"]
{{- end -}}

{{/*
What runs workloads takes, the same for `steward run` (the Deployment) and a serving
agent (the DaemonSet): flags ...
*/}}
{{- define "steward.workloadArgs" -}}
{{- if .Values.metrics.enabled }}
- --metrics-port={{ .Values.metrics.port }}
{{- end }}
- --daemon-workers={{ .Values.operator.workers.daemon }}
- --container-workers={{ .Values.operator.workers.container }}
- --terraform-workers={{ .Values.operator.workers.terraform }}
{{- if .Values.tenancy.enforcePolicy }}
- --enforce-policy
{{- end }}
{{- if .Values.tenancy.sandbox.enabled }}
- --sandbox
{{- end }}
{{- end -}}

{{/* ... and environment (docker.mode=dind is the Deployment's only: its sidecar). */}}
{{- define "steward.workloadEnv" -}}
{{- $sandbox := .Values.tenancy.sandbox -}}
- name: STEWARD_TERRAFORM_BINARY
  value: {{ .Values.terraform.binary | quote }}
- name: STEWARD_TERRAFORM_STATE_BACKEND
  value: {{ .Values.terraform.stateBackend | quote }}
{{- if $sandbox.enabled }}
- name: STEWARD_SANDBOX_UIDS
  value: "{{ int64 $sandbox.uidRange.start }}-{{ int64 $sandbox.uidRange.count }}"
- name: STEWARD_TERRAFORM_SERVICE_ACCOUNT
  value: {{ $sandbox.terraformServiceAccount | quote }}
{{- end }}
{{- if eq .Values.docker.mode "socket" }}
- name: DOCKER_HOST
  value: unix:///var/run/docker.sock
{{- end }}
{{- end -}}

{{/*
The pod and container securityContexts of what runs workloads: with the sandbox, root
with only tenancy.sandbox.capabilities (it switches to the services' own uids). `psc`
and `sc` are the values to start from, `on` whether the sandbox applies. runAsUser 0
also makes the kubelet write the ServiceAccount token 0600 root-owned (no fsGroup:
0640 to that group), out of the sandbox uids' reach.
*/}}
{{- define "steward.sandboxPodSecurity" -}}
{{- $psc := deepCopy .psc -}}
{{- if .on -}}
{{- $_ := set $psc "runAsNonRoot" false -}}
{{- $_ := set $psc "runAsUser" 0 -}}
{{- $_ := set $psc "runAsGroup" 0 -}}
{{- $_ := unset $psc "fsGroup" -}}
{{- end -}}
{{- toYaml $psc -}}
{{- end -}}

{{- define "steward.sandboxSecurity" -}}
{{- $sc := deepCopy .sc -}}
{{- if .on -}}
{{- $caps := deepCopy (default (dict) (get $sc "capabilities")) -}}
{{- $_ := set $caps "add" (concat (default (list) (get $caps "add")) .sandbox.capabilities | uniq) -}}
{{- $_ := set $sc "capabilities" $caps -}}
{{- end -}}
{{- toYaml $sc -}}
{{- end -}}
