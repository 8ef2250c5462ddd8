// Command argo-health runs an Argo CD resource health script (Lua) on
// Kubernetes objects, the way Argo CD's controller does for a
// `resource.customizations.health.<group>_<kind>` entry of argocd-cm:
//
//   - gopher-lua with the standard libraries skipped, then only package, base
//     and table opened (Argo CD adds a restricted `os`; Steward's script does
//     not use it, so it is left out here: a script that needs it fails);
//   - the object decoded as Kubernetes decodes unstructured JSON (integers
//     become int64, other numbers float64) and set as the global `obj`,
//     maps as hash tables, lists as arrays;
//   - a one-second deadline;
//   - the returned table encoded to JSON (layeh.com/gopher-json) and read as
//     {status, message}; a status outside Healthy, Progressing, Degraded,
//     Suspended, Missing, Unknown becomes Unknown with Argo CD's message.
//
// Usage: argo-health SCRIPT.lua < objects.json
//
// stdin holds one JSON object or a JSON list of objects; stdout gets one JSON
// result ({"status": ..., "message": ...}) or a list of them, in order. A Lua
// error gives {"error": ...} for that object and exit status 1.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
	k8sjson "k8s.io/apimachinery/pkg/util/json"
	luajson "layeh.com/gopher-json"
)

type result struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
	Error   string `json:"error,omitempty"`
}

var validStatus = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true,
	"Suspended": true, "Missing": true, "Unknown": true,
}

// toLua converts a decoded JSON value to a Lua value.
func toLua(l *lua.LState, v interface{}) lua.LValue {
	switch x := v.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(x)
	case string:
		return lua.LString(x)
	case json.Number:
		return lua.LString(string(x))
	case float64:
		return lua.LNumber(x)
	case int64:
		return lua.LNumber(x)
	case int32:
		return lua.LNumber(x)
	case int:
		return lua.LNumber(x)
	case []interface{}:
		t := l.CreateTable(len(x), 0)
		for _, item := range x {
			t.Append(toLua(l, item))
		}
		return t
	case map[string]interface{}:
		t := l.CreateTable(0, len(x))
		for k, item := range x {
			t.RawSetH(lua.LString(k), toLua(l, item))
		}
		return t
	}
	return lua.LNil
}

func health(obj map[string]interface{}, script string) (res result) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return result{Error: err.Error()}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(script); err != nil {
		return result{Error: err.Error()}
	}
	ret := l.Get(-1)
	if ret.Type() != lua.LTTable {
		return result{Error: fmt.Sprintf("expect table output from Lua script, not %s", ret.Type())}
	}
	encoded, err := luajson.Encode(ret)
	if err != nil {
		return result{Error: err.Error()}
	}
	var hs struct {
		Status  string `json:"status"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(encoded, &hs); err != nil {
		return result{Error: err.Error()}
	}
	if !validStatus[hs.Status] {
		return result{Status: "Unknown", Message: "Lua returned an invalid health status"}
	}
	return result{Status: hs.Status, Message: hs.Message}
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: argo-health SCRIPT.lua < objects.json")
		os.Exit(2)
	}
	script, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "argo-health:", err)
		os.Exit(2)
	}
	input, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "argo-health:", err)
		os.Exit(2)
	}
	var doc interface{}
	if err := k8sjson.Unmarshal(input, &doc); err != nil {
		fmt.Fprintln(os.Stderr, "argo-health: stdin is not JSON:", err)
		os.Exit(2)
	}
	failed := false
	run := func(v interface{}) result {
		obj, ok := v.(map[string]interface{})
		if !ok {
			failed = true
			return result{Error: "not a JSON object"}
		}
		r := health(obj, string(script))
		if r.Error != "" {
			failed = true
		}
		return r
	}
	var out interface{}
	if list, ok := doc.([]interface{}); ok {
		results := make([]result, 0, len(list))
		for _, item := range list {
			results = append(results, run(item))
		}
		out = results
	} else {
		out = run(doc)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "argo-health:", err)
		os.Exit(2)
	}
	if failed {
		os.Exit(1)
	}
}
