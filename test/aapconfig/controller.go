// Package aapconfig tests playbooks/aap/configure_controller.yml against a
// fake Automation Controller: an in-memory object store behind the
// /api/v2/ REST contract the awx.awx modules use (lists with exact-match
// filters and or__ lookups, create/patch/delete, association sub-resources,
// survey specs, secret inputs returned as $encrypted$), so the test can check
// what the playbook creates, that a second run changes nothing and that
// --check writes nothing.
package aapconfig

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Object is one controller resource as the fake stores it.
type Object map[string]any

// Controller is the fake. Use New, then URL and Token for CONTROLLER_HOST and
// CONTROLLER_OAUTH_TOKEN.
type Controller struct {
	srv   *httptest.Server
	token string

	mu      sync.Mutex
	nextID  int
	objs    map[string][]Object // collection -> objects
	assoc   map[string][]int    // "<collection>/<id>/<relation>" -> ids
	surveys map[string]Object   // "<collection>/<id>" -> survey spec
	writes  []string            // "METHOD path" of every non-GET request
}

// relations maps an association sub-resource to the collection it holds.
var relations = map[string]string{
	"credentials":                      "credentials",
	"labels":                           "labels",
	"instance_groups":                  "instance_groups",
	"success_nodes":                    "workflow_job_template_nodes",
	"failure_nodes":                    "workflow_job_template_nodes",
	"always_nodes":                     "workflow_job_template_nodes",
	"hosts":                            "hosts",
	"children":                         "groups",
	"notification_templates_started":   "notification_templates",
	"notification_templates_success":   "notification_templates",
	"notification_templates_error":     "notification_templates",
	"notification_templates_approvals": "notification_templates",
}

// New starts a fake controller with the objects a fresh AWX has: the
// Default organization and the managed credential types.
func New(token string) *Controller {
	c := &Controller{token: token, objs: map[string][]Object{}, assoc: map[string][]int{}, surveys: map[string]Object{}}
	c.create("organizations", Object{"name": "Default"})
	field := func(id string, secret bool) map[string]any {
		return map[string]any{"id": id, "type": "string", "secret": secret}
	}
	for name, fields := range map[string][]any{
		"Machine": {field("username", false), field("password", true), field("ssh_key_data", true),
			field("ssh_key_unlock", true), field("become_method", false), field("become_username", false), field("become_password", true)},
		"Amazon Web Services": {field("username", false), field("password", true), field("security_token", true)},
		"OpenShift or Kubernetes API Bearer Token": {field("host", false), field("bearer_token", true),
			map[string]any{"id": "verify_ssl", "type": "boolean"}, field("ssl_ca_cert", false)},
		"Source Control": {field("username", false), field("password", true), field("ssh_key_data", true)},
	} {
		c.create("credential_types", Object{"name": name, "managed": true, "kind": "cloud", "inputs": map[string]any{"fields": fields}})
	}
	c.srv = httptest.NewServer(http.HandlerFunc(c.serve))
	return c
}

// URL is the controller's base URL.
func (c *Controller) URL() string { return c.srv.URL }

// Close stops the server.
func (c *Controller) Close() { c.srv.Close() }

// Writes returns every non-GET request so far.
func (c *Controller) Writes() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.writes...)
}

// Find returns the stored objects of a collection whose fields equal match.
func (c *Controller) Find(collection string, match Object) []Object {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Object
	for _, o := range c.objs[collection] {
		ok := true
		for k, v := range match {
			if fmt.Sprint(o[k]) != fmt.Sprint(v) {
				ok = false
			}
		}
		if ok {
			out = append(out, o)
		}
	}
	return out
}

// Associated returns the objects associated to collection/id under relation.
func (c *Controller) Associated(collection string, id any, relation string) []Object {
	c.mu.Lock()
	ids := append([]int(nil), c.assoc[fmt.Sprintf("%s/%v/%s", collection, id, relation)]...)
	c.mu.Unlock()
	var out []Object
	for _, i := range ids {
		out = append(out, c.Find(relations[relation], Object{"id": i})...)
	}
	return out
}

// Survey returns the stored survey spec of collection/id.
func (c *Controller) Survey(collection string, id any) Object {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.surveys[fmt.Sprintf("%s/%v", collection, id)]
}

func singular(collection string) string {
	switch collection {
	case "inventories":
		return "inventory"
	case "unified_job_templates":
		return "unified_job_template"
	}
	return strings.TrimSuffix(collection, "s")
}

// create stores obj in collection; the caller holds no lock or the lock (not re-entrant: called at start and from serve under lock).
func (c *Controller) create(collection string, obj Object) Object {
	c.nextID++
	id := c.nextID
	url := fmt.Sprintf("/api/v2/%s/%d/", collection, id)
	obj["id"] = id
	obj["type"] = singular(collection)
	obj["url"] = url
	related := map[string]any{"survey_spec": url + "survey_spec/", "launch": url + "launch/", "copy": url + "copy/", "update": url + "update/"}
	for rel := range relations {
		related[rel] = url + rel + "/"
	}
	obj["related"] = related
	obj["summary_fields"] = map[string]any{}
	switch collection {
	case "projects":
		obj["scm_revision"] = "0123456789abcdef"
		obj["status"] = "successful"
	case "job_templates", "workflow_job_templates":
		// AWX derives a job template's organization from its project.
		if _, ok := obj["organization"]; !ok {
			if p := c.byID("projects", obj["project"]); p != nil {
				obj["organization"] = p["organization"]
			}
		}
	}
	c.objs[collection] = append(c.objs[collection], obj)
	return obj
}

func (c *Controller) byID(collection string, id any) Object {
	for _, o := range c.objs[collection] {
		if fmt.Sprint(o["id"]) == fmt.Sprint(id) {
			return o
		}
	}
	return nil
}

// view renders an object as the API returns it: secret credential inputs masked.
func (c *Controller) view(collection string, o Object) Object {
	out := Object{}
	for k, v := range o {
		out[k] = v
	}
	if collection == "credentials" {
		secret := map[string]bool{}
		if ct := c.byID("credential_types", o["credential_type"]); ct != nil {
			if in, ok := ct["inputs"].(map[string]any); ok {
				fields, _ := in["fields"].([]any)
				for _, f := range fields {
					if fm, ok := f.(map[string]any); ok && fm["secret"] == true {
						secret[fmt.Sprint(fm["id"])] = true
					}
				}
			}
		}
		if in, ok := o["inputs"].(map[string]any); ok {
			masked := map[string]any{}
			for k, v := range in {
				if secret[k] && fmt.Sprint(v) != "" {
					v = "$encrypted$"
				}
				masked[k] = v
			}
			out["inputs"] = masked
		}
	}
	return out
}

func (c *Controller) list(collection string) []Object {
	if collection == "unified_job_templates" {
		var all []Object
		all = append(all, c.objs["job_templates"]...)
		all = append(all, c.objs["workflow_job_templates"]...)
		all = append(all, c.objs["projects"]...)
		return all
	}
	return c.objs[collection]
}

func match(o Object, q map[string][]string) bool {
	anyOr, okOr := false, false
	for k, vs := range q {
		switch k {
		case "page", "page_size", "order_by":
			continue
		}
		v := vs[0]
		if f, isOr := strings.CutPrefix(k, "or__"); isOr {
			anyOr = true
			if fmt.Sprint(o[f]) == v {
				okOr = true
			}
			continue
		}
		if fmt.Sprint(o[k]) != v {
			return false
		}
	}
	return !anyOr || okOr
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (c *Controller) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-API-Product-Name", "AWX")
	w.Header().Set("X-API-Product-Version", "21.14.0")
	if r.Header.Get("Authorization") != "Bearer "+c.token {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"detail": "Authentication credentials were not provided."})
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/api/v2/")
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]any{"detail": "Not found."})
		return
	}
	parts := strings.Split(strings.Trim(rest, "/"), "/")
	var body Object
	if r.Method == http.MethodPost || r.Method == http.MethodPatch {
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil && r.ContentLength != 0 {
			writeJSON(w, http.StatusBadRequest, map[string]any{"detail": "JSON parse error - " + err.Error()})
			return
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if r.Method != http.MethodGet {
		c.writes = append(c.writes, r.Method+" "+r.URL.Path)
	}
	coll := parts[0]
	switch {
	case len(parts) == 1 && coll == "ping":
		writeJSON(w, http.StatusOK, map[string]any{"version": "21.14.0", "ha": false})
	case len(parts) == 1 && r.Method == http.MethodGet:
		var res []Object
		for _, o := range c.list(coll) {
			if match(o, r.URL.Query()) {
				res = append(res, c.view(coll, o))
			}
		}
		if res == nil {
			res = []Object{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"count": len(res), "next": nil, "previous": nil, "results": res})
	case len(parts) == 1 && r.Method == http.MethodPost:
		if name, has := body["name"]; has && coll != "workflow_job_template_nodes" {
			for _, o := range c.objs[coll] {
				if o["name"] == name && fmt.Sprint(o["organization"]) == fmt.Sprint(body["organization"]) &&
					fmt.Sprint(o["inventory"]) == fmt.Sprint(body["inventory"]) {
					writeJSON(w, http.StatusBadRequest, map[string]any{"__all__": []string{"already exists"}})
					return
				}
			}
		}
		writeJSON(w, http.StatusCreated, c.view(coll, c.create(coll, body)))
	case len(parts) == 2:
		o := c.byID(coll, parts[1])
		if o == nil {
			writeJSON(w, http.StatusNotFound, map[string]any{"detail": "Not found."})
			return
		}
		switch r.Method {
		case http.MethodGet:
			writeJSON(w, http.StatusOK, c.view(coll, o))
		case http.MethodPatch:
			for k, v := range body {
				if k == "inputs" && coll == "credentials" {
					// $encrypted$ in an update keeps the stored secret, as AWX does.
					old, _ := o["inputs"].(map[string]any)
					nv, _ := v.(map[string]any)
					merged := map[string]any{}
					for ik, iv := range nv {
						if iv == "$encrypted$" && old != nil {
							iv = old[ik]
						}
						merged[ik] = iv
					}
					v = merged
				}
				o[k] = v
			}
			writeJSON(w, http.StatusOK, c.view(coll, o))
		case http.MethodDelete:
			kept := c.objs[coll][:0]
			for _, x := range c.objs[coll] {
				if x["id"] != o["id"] {
					kept = append(kept, x)
				}
			}
			c.objs[coll] = kept
			w.WriteHeader(http.StatusNoContent)
		default:
			writeJSON(w, http.StatusMethodNotAllowed, map[string]any{"detail": "Method not allowed."})
		}
	case len(parts) == 3 && parts[2] == "survey_spec":
		key := coll + "/" + parts[1]
		switch r.Method {
		case http.MethodGet:
			spec := c.surveys[key]
			if spec == nil {
				spec = Object{}
			}
			writeJSON(w, http.StatusOK, spec)
		case http.MethodPost:
			if msg := validateSurvey(body); msg != "" {
				writeJSON(w, http.StatusBadRequest, map[string]any{"error": msg})
				return
			}
			c.surveys[key] = body
			w.WriteHeader(http.StatusOK)
		case http.MethodDelete:
			delete(c.surveys, key)
			w.WriteHeader(http.StatusOK)
		}
	case len(parts) == 3 && relations[parts[2]] != "":
		key := strings.Join(parts, "/")
		target := relations[parts[2]]
		switch r.Method {
		case http.MethodGet:
			res := []Object{}
			for _, id := range c.assoc[key] {
				if o := c.byID(target, id); o != nil {
					res = append(res, c.view(target, o))
				}
			}
			writeJSON(w, http.StatusOK, map[string]any{"count": len(res), "next": nil, "previous": nil, "results": res})
		case http.MethodPost:
			idf, _ := body["id"].(float64)
			id := int(idf)
			if c.byID(target, id) == nil {
				writeJSON(w, http.StatusBadRequest, map[string]any{"msg": "no such " + target + " " + strconv.Itoa(id)})
				return
			}
			ids := c.assoc[key][:0:0]
			for _, x := range c.assoc[key] {
				if x != id {
					ids = append(ids, x)
				}
			}
			if body["disassociate"] != true {
				ids = append(ids, id)
			}
			sort.Ints(ids)
			c.assoc[key] = ids
			w.WriteHeader(http.StatusNoContent)
		}
	default:
		writeJSON(w, http.StatusNotFound, map[string]any{"detail": "Not found."})
	}
}

// validateSurvey applies AWX's survey_spec rules (see shared/research/aap.md §3).
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
