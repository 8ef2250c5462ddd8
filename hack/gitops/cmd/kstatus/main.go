// Command kstatus computes the kstatus status of Kubernetes objects with
// sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute: the library that Flux's
// health checks (Kustomization wait/healthChecks) and Helm 4's --wait use.
//
// Usage: kstatus < objects.json
//
// stdin holds one JSON object or a JSON list of objects; stdout gets one JSON
// result ({"status": "Current"|"InProgress"|"Failed"|"Terminating"|"NotFound"|
// "Unknown", "message": ..., "conditions": [...]}) or a list of them, in
// order. An object Compute cannot assess gives {"error": ...} and exit 1.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sjson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type result struct {
	Status     string             `json:"status,omitempty"`
	Message    string             `json:"message,omitempty"`
	Conditions []status.Condition `json:"conditions,omitempty"`
	Error      string             `json:"error,omitempty"`
}

func compute(v interface{}) result {
	obj, ok := v.(map[string]interface{})
	if !ok {
		return result{Error: "not a JSON object"}
	}
	res, err := status.Compute(&unstructured.Unstructured{Object: obj})
	if err != nil {
		return result{Error: err.Error()}
	}
	return result{Status: res.Status.String(), Message: res.Message, Conditions: res.Conditions}
}

func main() {
	input, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(2)
	}
	var doc interface{}
	if err := k8sjson.Unmarshal(input, &doc); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus: stdin is not JSON:", err)
		os.Exit(2)
	}
	failed := false
	var out interface{}
	if list, ok := doc.([]interface{}); ok {
		results := make([]result, 0, len(list))
		for _, item := range list {
			r := compute(item)
			failed = failed || r.Error != ""
			results = append(results, r)
		}
		out = results
	} else {
		r := compute(doc)
		failed = r.Error != ""
		out = r
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(2)
	}
	if failed {
		os.Exit(1)
	}
}
