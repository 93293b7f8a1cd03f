// survey_spec.go validates survey specs posted to the configuration store
// with AWX's rules.
package aaptest

import "fmt"

// validateSurvey applies AWX's survey_spec rules (the research notes, aap.md §3).
func validateSurvey(s Object) string {
	if _, ok := s["name"].(string); !ok {
		return "'name' missing from survey spec."
	}
	if _, ok := s["description"].(string); !ok {
		return "'description' missing from survey spec."
	}
	spec, ok := s["spec"].([]any)
	if !ok || len(spec) == 0 {
		return "'spec' must be a non-empty list."
	}
	seen := map[string]bool{}
	allowed := map[string]bool{"text": true, "textarea": true, "password": true, "integer": true, "float": true, "multiplechoice": true, "multiselect": true}
	for i, q := range spec {
		m, ok := q.(map[string]any)
		if !ok {
			return fmt.Sprintf("Survey question %d is not a json object.", i)
		}
		for _, k := range []string{"type", "question_name", "variable"} {
			if _, ok := m[k].(string); !ok {
				return fmt.Sprintf("'%s' missing from survey question %d.", k, i)
			}
		}
		if _, ok := m["required"].(bool); !ok {
			return fmt.Sprintf("'required' missing from survey question %d.", i)
		}
		if !allowed[m["type"].(string)] {
			return fmt.Sprintf("'%v' in survey question %d is not one of the allowed types.", m["type"], i)
		}
		v := m["variable"].(string)
		if seen[v] {
			return fmt.Sprintf("'variable' '%s' duplicated in survey question %d.", v, i)
		}
		seen[v] = true
	}
	return ""
}
