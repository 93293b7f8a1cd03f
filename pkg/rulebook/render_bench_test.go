// Benchmark of rendering action arguments, the templates of the shipped
// rulebook and a mixed one with filters and a method call.

package rulebook

import "testing"

func BenchmarkRender(b *testing.B) {
	vars, err := LoadVarsFile("../../rulebooks/vars.yml")
	if err != nil {
		b.Fatal(err)
	}
	ev := benchEvent(b, "pv-added.json")
	ctx := map[string]any{"event": ev}
	for k, v := range vars {
		ctx[k] = v
	}
	cases := map[string]map[string]any{
		"shipped": {"name": "x", "organization": "{{ aap_organization }}",
			"job_args": map[string]any{"extra_vars": map[string]any{"pv_object": "{{ event.payload.resource }}"}}},
		"mixed": {"msg": "pv {{ event.payload.resource.metadata.name | upper }} in {{ event.meta.endpoint.strip('/') }}"},
	}
	for name, args := range cases {
		b.Run(name, func(b *testing.B) {
			c := compileArgs(args, vars)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := renderCompiled(c, ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
