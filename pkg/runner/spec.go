package runner

// Declared inputs of catalog templates: the local runner's counterpart of a
// Controller template's survey. A launch through the receiver's operator API
// may set only the declared variables, with the declared types; a template
// that needs a confirmation (failover, failback) is launched only with it.

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Variable is one declared extra variable of a template.
type Variable struct {
	Name     string   `yaml:"name"`
	Type     string   `yaml:"type"` // string (default), bool, int, list, dict
	Required bool     `yaml:"required"`
	Choices  []string `yaml:"choices"` // for strings: the allowed values
}

// TemplateSpec is what a template declares.
type TemplateSpec struct {
	Kind      string
	Name      string
	Variables []Variable
	// Confirm: a launch must name the site (failover and failback
	// templates; default from the name, or the catalog's confirm).
	Confirm bool
}

var varTypes = []string{"string", "bool", "int", "list", "dict"}

func (c *Catalog) addSpec(kind string, e catalogEntry) error {
	spec := TemplateSpec{Kind: kind, Name: e.Name, Variables: e.Variables}
	n := strings.ToLower(e.Name)
	spec.Confirm = strings.Contains(n, "failover") || strings.Contains(n, "failback")
	if e.Confirm != nil {
		spec.Confirm = *e.Confirm
	}
	var errs []error
	for i, v := range spec.Variables {
		if v.Type == "" {
			spec.Variables[i].Type = "string"
		} else if !slices.Contains(varTypes, v.Type) {
			errs = append(errs, fmt.Errorf("template %q: variable %q: type %q is not one of %v", e.Name, v.Name, v.Type, varTypes))
		}
		if v.Name == "" {
			errs = append(errs, fmt.Errorf("template %q: a variable has no name", e.Name))
		}
	}
	c.Specs[kind+"/"+e.Name] = spec
	return errors.Join(errs...)
}

// Spec returns the declared inputs of a template of kind
// (dispatch.KindJobTemplate or KindWorkflowTemplate).
func (c *Catalog) Spec(kind, name string) (TemplateSpec, bool) {
	s, ok := c.Specs[kind+"/"+name]
	return s, ok
}

// Validate checks extra vars against the declared variables: no undeclared
// one, every required one, each of its type and choices.
func (s TemplateSpec) Validate(vars map[string]any) error {
	var errs []error
	declared := map[string]Variable{}
	for _, v := range s.Variables {
		declared[v.Name] = v
		if _, ok := vars[v.Name]; v.Required && !ok {
			errs = append(errs, fmt.Errorf("%s is required", v.Name))
		}
	}
	for _, k := range sortedNames(vars) {
		d, ok := declared[k]
		if !ok {
			errs = append(errs, fmt.Errorf("%s is not a variable of %q", k, s.Name))
			continue
		}
		if err := d.check(vars[k]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (v Variable) check(x any) error {
	ok := false
	switch v.Type {
	case "string":
		str, isStr := x.(string)
		ok = isStr && (len(v.Choices) == 0 || slices.Contains(v.Choices, str))
	case "bool":
		_, ok = x.(bool)
	case "int":
		f, isNum := x.(float64)
		ok = isNum && f == float64(int64(f))
	case "list":
		_, ok = x.([]any)
	case "dict":
		_, ok = x.(map[string]any)
	}
	if !ok {
		if len(v.Choices) > 0 {
			return fmt.Errorf("%s must be one of %v", v.Name, v.Choices)
		}
		return fmt.Errorf("%s must be of type %s", v.Name, v.Type)
	}
	return nil
}

func sortedNames(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
