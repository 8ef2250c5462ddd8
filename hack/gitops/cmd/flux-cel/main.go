// Command flux-cel evaluates a Flux Kustomization `healthCheckExprs` entry
// (current, failed, inProgress CEL expressions) on Kubernetes objects the way
// Flux's kustomize-controller does (RFC-0009, Flux >= 2.5):
//
//   - a status.observedGeneration that differs from metadata.generation is
//     InProgress, without evaluating anything;
//   - otherwise inProgress, failed, current are evaluated in that order (those
//     given) and the first that is true gives InProgress, Failed, Current;
//   - none true: InProgress;
//   - the expressions are parsed, not type-checked, with no declared
//     variables: the object's top-level fields are the activation, so an
//     object without `status` makes an expression that reads it fail to
//     evaluate (Flux then keeps waiting, reporting the error);
//   - the CEL environment has optional types, cross-type numeric comparisons,
//     homogeneous aggregate literals, UTC as default time zone and the
//     strings, sets and encoders extensions.
//
// Usage: flux-cel EXPRS.json < objects.json
//
// EXPRS.json: {"current": ..., "failed": ..., "inProgress": ...} (current
// required). stdin holds one JSON object or a JSON list of objects; stdout
// gets {"status": ...} or, when an expression fails to evaluate, {"error": ...}
// per object (a result, not a failure: exit 0). Bad input or an expression
// that does not parse exits 2.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/ext"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sjson "k8s.io/apimachinery/pkg/util/json"
)

type exprs struct {
	Current    string `json:"current"`
	Failed     string `json:"failed"`
	InProgress string `json:"inProgress"`
}

type result struct {
	Status string `json:"status,omitempty"`
	Error  string `json:"error,omitempty"`
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "flux-cel: "+format+"\n", args...)
	os.Exit(2)
}

func program(env *cel.Env, expr string) cel.Program {
	ast, issues := env.Parse(expr)
	if issues != nil && issues.Err() != nil {
		fail("cannot parse %q: %s", expr, issues.String())
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize), cel.InterruptCheckFrequency(100))
	if err != nil {
		fail("cannot build a program for %q: %v", expr, err)
	}
	return prg
}

type check struct {
	prg    cel.Program
	expr   string
	status string
}

func evaluate(checks []check, v interface{}) result {
	obj, ok := v.(map[string]interface{})
	if !ok {
		return result{Error: "not a JSON object"}
	}
	observed, found, err := unstructured.NestedInt64(obj, "status", "observedGeneration")
	if err != nil {
		return result{Error: err.Error()}
	}
	if found {
		generation, found, err := unstructured.NestedInt64(obj, "metadata", "generation")
		if err != nil {
			return result{Error: err.Error()}
		}
		if found && generation != observed {
			return result{Status: "InProgress"}
		}
	}
	for _, c := range checks {
		val, _, err := c.prg.ContextEval(context.Background(), obj)
		if err != nil {
			return result{Error: fmt.Sprintf("failed to evaluate the CEL expression '%s': %v", c.expr, err)}
		}
		b, ok := val.(types.Bool)
		if !ok {
			return result{Error: fmt.Sprintf("failed to evaluate CEL expression as boolean: '%s'", c.expr)}
		}
		if b {
			return result{Status: c.status}
		}
	}
	return result{Status: "InProgress"}
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: flux-cel EXPRS.json < objects.json")
		os.Exit(2)
	}
	raw, err := os.ReadFile(os.Args[1])
	if err != nil {
		fail("%v", err)
	}
	var e exprs
	if err := json.Unmarshal(raw, &e); err != nil {
		fail("%s: %v", os.Args[1], err)
	}
	if e.Current == "" {
		fail("expression current not specified")
	}
	env, err := cel.NewEnv(
		cel.HomogeneousAggregateLiterals(),
		cel.EagerlyValidateDeclarations(true),
		cel.DefaultUTCTimeZone(true),
		cel.CrossTypeNumericComparisons(true),
		cel.OptionalTypes(),
		ext.Strings(),
		ext.Sets(),
		ext.Encoders(),
	)
	if err != nil {
		fail("CEL environment: %v", err)
	}
	var checks []check
	for _, c := range []struct{ expr, status string }{
		{e.InProgress, "InProgress"}, {e.Failed, "Failed"}, {e.Current, "Current"},
	} {
		if c.expr != "" {
			checks = append(checks, check{program(env, c.expr), c.expr, c.status})
		}
	}

	input, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail("%v", err)
	}
	var doc interface{}
	if err := k8sjson.Unmarshal(input, &doc); err != nil {
		fail("stdin is not JSON: %v", err)
	}
	var out interface{}
	if list, ok := doc.([]interface{}); ok {
		results := make([]result, 0, len(list))
		for _, item := range list {
			results = append(results, evaluate(checks, item))
		}
		out = results
	} else {
		out = evaluate(checks, doc)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		fail("%v", err)
	}
}
