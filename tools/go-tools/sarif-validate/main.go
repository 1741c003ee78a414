// sarif-validate: checks SARIF files against the OASIS SARIF 2.1.0 JSON schema that
// github.com/owenrumney/go-sarif/v3 ships (errata01; written out by tool.env's tool_prepare),
// with gojsonschema, on the raw file as written (no decoding into a model first).
//
// usage: sarif-validate FILE...   exit 0 when every file is valid, 1 otherwise
package main

import (
	_ "embed"
	"fmt"
	"os"

	_ "github.com/owenrumney/go-sarif/v3/pkg/report/v210/sarif"
	"github.com/xeipuuv/gojsonschema"
)

//go:embed sarif-schema-2.1.0.json
var schema string

func check(s *gojsonschema.Schema, path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	result, err := s.Validate(gojsonschema.NewBytesLoader(raw))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	if !result.Valid() {
		msg := ""
		for _, e := range result.Errors() {
			msg += "\n  " + e.String()
		}
		return fmt.Errorf("%d schema errors:%s", len(result.Errors()), msg)
	}
	return nil
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: sarif-validate FILE...")
		os.Exit(2)
	}
	s, err := gojsonschema.NewSchema(gojsonschema.NewStringLoader(schema))
	if err != nil {
		fmt.Fprintln(os.Stderr, "the embedded schema does not load:", err)
		os.Exit(2)
	}
	failed := false
	for _, path := range os.Args[1:] {
		if err := check(s, path); err != nil {
			fmt.Printf("%s: INVALID: %v\n", path, err)
			failed = true
		} else {
			fmt.Printf("%s: valid SARIF 2.1.0\n", path)
		}
	}
	if failed {
		os.Exit(1)
	}
}
