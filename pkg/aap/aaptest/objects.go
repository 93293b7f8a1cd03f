// objects.go serves the configuration-as-code contract the awx.awx modules
// use: an in-memory object store behind /api/v2/ with exact-match and or__
// lookups, create/patch/delete, association sub-resources, survey specs and
// secret credential inputs returned as $encrypted$, so a test can check what
// a playbook creates, that a second run changes nothing and that --check
// writes nothing.
package aaptest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// Object is one controller resource as the configuration store keeps it.
type Object map[string]any

// storeState is what the configuration-as-code contract keeps.
type storeState struct {
	objs    map[string][]Object // collection -> objects
	assoc   map[string][]int    // "<collection>/<id>/<relation>" -> ids
	surveys map[string]Object   // "<collection>/<id>" -> survey spec
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

// initStore fills the store with what a fresh AWX has.
func (s *Server) initStore() {
	s.objs, s.assoc, s.surveys = map[string][]Object{}, map[string][]int{}, map[string]Object{}
	s.create("organizations", Object{"name": "Default"})
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
		s.create("credential_types", Object{"name": name, "managed": true, "kind": "cloud", "inputs": map[string]any{"fields": fields}})
	}
}

// storeRoutes is the configuration-as-code contract, under /api/v2/ only.
func (s *Server) storeRoutes() *http.ServeMux {
	mux := http.NewServeMux()
	for pattern, h := range map[string]func(http.ResponseWriter, *http.Request, string){
		"GET {coll}/{$}":                     s.listObjects,
		"POST {coll}/{$}":                    s.createObject,
		"GET {coll}/{id}/{$}":                s.getObject,
		"PATCH {coll}/{id}/{$}":              s.patchObject,
		"DELETE {coll}/{id}/{$}":             s.deleteObject,
		"{coll}/{id}/{$}":                    s.objectMethodNotAllowed,
		"GET {coll}/{id}/survey_spec/{$}":    s.getSurvey,
		"POST {coll}/{id}/survey_spec/{$}":   s.postSurvey,
		"DELETE {coll}/{id}/survey_spec/{$}": s.deleteSurvey,
		"GET {coll}/{id}/{rel}/{$}":          s.listAssociated,
		"POST {coll}/{id}/{rel}/{$}":         s.associate,
	} {
		route(mux, pattern, h, controllerPrefix)
	}
	return mux
}

// Find returns the stored objects of a collection whose fields equal match.
func (s *Server) Find(collection string, match Object) []Object {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Object
	for _, o := range s.objs[collection] {
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
func (s *Server) Associated(collection string, id any, relation string) []Object {
	s.mu.Lock()
	ids := append([]int(nil), s.assoc[fmt.Sprintf("%s/%v/%s", collection, id, relation)]...)
	s.mu.Unlock()
	var out []Object
	for _, i := range ids {
		out = append(out, s.Find(relations[relation], Object{"id": i})...)
	}
	return out
}

// Survey returns the stored survey spec of collection/id.
func (s *Server) Survey(collection string, id any) Object {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.surveys[fmt.Sprintf("%s/%v", collection, id)]
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

// create stores obj in collection with its id, type, url and related links.
func (s *Server) create(collection string, obj Object) Object {
	s.nextID++
	id := int(s.nextID)
	url := fmt.Sprintf("%s%s/%d/", controllerPrefix, collection, id)
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
			if p := s.byID("projects", obj["project"]); p != nil {
				obj["organization"] = p["organization"]
			}
		}
	}
	s.objs[collection] = append(s.objs[collection], obj)
	return obj
}

func (s *Server) byID(collection string, id any) Object {
	for _, o := range s.objs[collection] {
		if fmt.Sprint(o["id"]) == fmt.Sprint(id) {
			return o
		}
	}
	return nil
}

// view renders an object as the API returns it: secret credential inputs masked.
func (s *Server) view(collection string, o Object) Object {
	out := Object{}
	for k, v := range o {
		out[k] = v
	}
	if collection != "credentials" {
		return out
	}
	secret := s.secretFields(o["credential_type"])
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
	return out
}

// secretFields are the input ids a credential type marks secret.
func (s *Server) secretFields(credentialType any) map[string]bool {
	secret := map[string]bool{}
	if ct := s.byID("credential_types", credentialType); ct != nil {
		if in, ok := ct["inputs"].(map[string]any); ok {
			fields, _ := in["fields"].([]any)
			for _, f := range fields {
				if fm, ok := f.(map[string]any); ok && fm["secret"] == true {
					secret[fmt.Sprint(fm["id"])] = true
				}
			}
		}
	}
	return secret
}

func (s *Server) list(collection string) []Object {
	if collection == "unified_job_templates" {
		var all []Object
		all = append(all, s.objs["job_templates"]...)
		all = append(all, s.objs["workflow_job_templates"]...)
		all = append(all, s.objs["projects"]...)
		return all
	}
	return s.objs[collection]
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

// decodeObject reads a POST or PATCH body; an empty body is an empty object.
func decodeObject(w http.ResponseWriter, r *http.Request) (Object, bool) {
	var body Object
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil && r.ContentLength != 0 {
		writeJSON(w, http.StatusBadRequest, map[string]any{"detail": "JSON parse error - " + err.Error()})
		return nil, false
	}
	return body, true
}

// writeAll answers a whole list as one page, as the store does not paginate.
func writeAll(w http.ResponseWriter, res []Object) {
	if res == nil {
		res = []Object{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"count": len(res), "next": nil, "previous": nil, "results": res})
}
