// store_routes.go holds the configuration-as-code contract's handlers:
// collections, objects, survey specs and association sub-resources.
package aaptest

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
)

func (s *Server) listObjects(w http.ResponseWriter, r *http.Request, _ string) {
	coll := r.PathValue("coll")
	var res []Object
	for _, o := range s.list(coll) {
		if match(o, r.URL.Query()) {
			res = append(res, s.view(coll, o))
		}
	}
	writeAll(w, res)
}

func (s *Server) createObject(w http.ResponseWriter, r *http.Request, _ string) {
	coll := r.PathValue("coll")
	body, ok := decodeObject(w, r)
	if !ok {
		return
	}
	if name, has := body["name"]; has && coll != "workflow_job_template_nodes" {
		for _, o := range s.objs[coll] {
			if o["name"] == name && fmt.Sprint(o["organization"]) == fmt.Sprint(body["organization"]) &&
				fmt.Sprint(o["inventory"]) == fmt.Sprint(body["inventory"]) {
				writeJSON(w, http.StatusBadRequest, map[string]any{"__all__": []string{"already exists"}})
				return
			}
		}
	}
	if body == nil {
		body = Object{}
	}
	writeJSON(w, http.StatusCreated, s.view(coll, s.create(coll, body)))
}

// object is the stored object the request names, or a 404 answered.
func (s *Server) object(w http.ResponseWriter, r *http.Request) (string, Object) {
	coll := r.PathValue("coll")
	o := s.byID(coll, r.PathValue("id"))
	if o == nil {
		writeJSON(w, http.StatusNotFound, map[string]any{"detail": "Not found."})
	}
	return coll, o
}

func (s *Server) getObject(w http.ResponseWriter, r *http.Request, _ string) {
	if coll, o := s.object(w, r); o != nil {
		writeJSON(w, http.StatusOK, s.view(coll, o))
	}
}

func (s *Server) patchObject(w http.ResponseWriter, r *http.Request, _ string) {
	body, ok := decodeObject(w, r)
	if !ok {
		return
	}
	coll, o := s.object(w, r)
	if o == nil {
		return
	}
	for k, v := range body {
		if k == "inputs" && coll == "credentials" {
			v = keepEncrypted(o["inputs"], v)
		}
		o[k] = v
	}
	writeJSON(w, http.StatusOK, s.view(coll, o))
}

// keepEncrypted merges new credential inputs: $encrypted$ in an update keeps
// the stored secret, as AWX does.
func keepEncrypted(stored, update any) map[string]any {
	old, _ := stored.(map[string]any)
	nv, _ := update.(map[string]any)
	merged := map[string]any{}
	for ik, iv := range nv {
		if iv == "$encrypted$" && old != nil {
			iv = old[ik]
		}
		merged[ik] = iv
	}
	return merged
}

func (s *Server) deleteObject(w http.ResponseWriter, r *http.Request, _ string) {
	coll, o := s.object(w, r)
	if o == nil {
		return
	}
	kept := s.objs[coll][:0]
	for _, x := range s.objs[coll] {
		if x["id"] != o["id"] {
			kept = append(kept, x)
		}
	}
	s.objs[coll] = kept
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) objectMethodNotAllowed(w http.ResponseWriter, r *http.Request, _ string) {
	if _, o := s.object(w, r); o != nil {
		writeJSON(w, http.StatusMethodNotAllowed, map[string]any{"detail": "Method not allowed."})
	}
}

func surveyKey(r *http.Request) string { return r.PathValue("coll") + "/" + r.PathValue("id") }

func (s *Server) getSurvey(w http.ResponseWriter, r *http.Request, _ string) {
	spec := s.surveys[surveyKey(r)]
	if spec == nil {
		spec = Object{}
	}
	writeJSON(w, http.StatusOK, spec)
}

func (s *Server) postSurvey(w http.ResponseWriter, r *http.Request, _ string) {
	body, ok := decodeObject(w, r)
	if !ok {
		return
	}
	if msg := validateSurvey(body); msg != "" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": msg})
		return
	}
	s.surveys[surveyKey(r)] = body
	w.WriteHeader(http.StatusOK)
}

func (s *Server) deleteSurvey(w http.ResponseWriter, r *http.Request, _ string) {
	delete(s.surveys, surveyKey(r))
	w.WriteHeader(http.StatusOK)
}

// relation is the association key and target collection the request names,
// or "" with a 404 answered.
func relation(w http.ResponseWriter, r *http.Request) (key, target string) {
	target = relations[r.PathValue("rel")]
	if target == "" {
		writeJSON(w, http.StatusNotFound, map[string]any{"detail": "Not found."})
		return "", ""
	}
	return r.PathValue("coll") + "/" + r.PathValue("id") + "/" + r.PathValue("rel"), target
}

func (s *Server) listAssociated(w http.ResponseWriter, r *http.Request, _ string) {
	key, target := relation(w, r)
	if target == "" {
		return
	}
	res := []Object{}
	for _, id := range s.assoc[key] {
		if o := s.byID(target, id); o != nil {
			res = append(res, s.view(target, o))
		}
	}
	writeAll(w, res)
}

func (s *Server) associate(w http.ResponseWriter, r *http.Request, _ string) {
	body, ok := decodeObject(w, r)
	if !ok {
		return
	}
	key, target := relation(w, r)
	if target == "" {
		return
	}
	idf, _ := body["id"].(float64)
	id := int(idf)
	if s.byID(target, id) == nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"msg": "no such " + target + " " + strconv.Itoa(id)})
		return
	}
	ids := s.assoc[key][:0:0]
	for _, x := range s.assoc[key] {
		if x != id {
			ids = append(ids, x)
		}
	}
	if body["disassociate"] != true {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	s.assoc[key] = ids
	w.WriteHeader(http.StatusNoContent)
}
