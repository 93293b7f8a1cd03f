// Package event defines the JSON payload that the forwarder (and the export
// watcher) POST for every change, version 1. The receiver, the rulebook and
// any ansible.eda.webhook activation read the same shape under
// event.payload.
package event

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Schema names this payload version.
const Schema = "ocpv-dr.io/event/v1"

// Event types.
const (
	Added    = "ADDED"
	Modified = "MODIFIED"
	Deleted  = "DELETED"
)

// Kinds the project sends.
const (
	KindPersistentVolume = "PersistentVolume"
	KindVolumeSnapshot   = "VolumeSnapshot"
	KindNFSDirectory     = "NFSDirectory"
)

// Payload is one change, as POSTed.
type Payload struct {
	Schema     string          `json:"schema"`
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	Kind       string          `json:"kind"`
	APIVersion string          `json:"apiVersion"`
	Cluster    string          `json:"cluster"`
	ObservedAt time.Time       `json:"observedAt"`
	Initial    bool            `json:"initial"`
	Resource   json.RawMessage `json:"resource"`
}

// ID is stable for one change of one object: the same uid, resourceVersion
// and type always give the same id, so receivers can drop duplicates.
func ID(uid, resourceVersion, eventType string) string {
	h := sha256.Sum256([]byte(uid + "\x00" + resourceVersion + "\x00" + eventType))
	return hex.EncodeToString(h[:16])
}

// Validate lists every problem with p.
func (p Payload) Validate() error {
	var errs []error
	if p.Schema != "" && p.Schema != Schema {
		errs = append(errs, fmt.Errorf("schema %q: this receiver understands %q", p.Schema, Schema))
	}
	if p.ID == "" {
		errs = append(errs, errors.New("id is empty"))
	}
	switch p.Type {
	case Added, Modified, Deleted:
	default:
		errs = append(errs, fmt.Errorf("type %q: want ADDED, MODIFIED or DELETED", p.Type))
	}
	if p.Kind == "" {
		errs = append(errs, errors.New("kind is empty"))
	}
	if len(p.Resource) == 0 || p.Resource[0] != '{' {
		errs = append(errs, errors.New("resource must be a JSON object"))
	}
	return errors.Join(errs...)
}

// Meta is the part of a Kubernetes object the receiver needs for dedupe and
// lanes.
type Meta struct {
	UID             string `json:"uid"`
	Name            string `json:"name"`
	Namespace       string `json:"namespace"`
	ResourceVersion string `json:"resourceVersion"`
}

// ObjectMeta decodes resource.metadata.
func (p Payload) ObjectMeta() (Meta, error) {
	var o struct {
		Metadata Meta `json:"metadata"`
	}
	if err := json.Unmarshal(p.Resource, &o); err != nil {
		return Meta{}, fmt.Errorf("decode resource metadata: %w", err)
	}
	return o.Metadata, nil
}
