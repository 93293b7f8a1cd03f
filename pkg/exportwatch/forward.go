package exportwatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/ocpv-dr/ocpv-dr/pkg/event"
	"github.com/ocpv-dr/ocpv-dr/pkg/sender"
)

// APIVersion is the apiVersion of NFSDirectory events.
const APIVersion = "ocpv-dr.io/v1"

// Directory is the resource of an NFSDirectory event. Kind and APIVersion
// repeat the envelope's so the resource alone (the rulebook passes it as
// nfs_path_object) says what it is.
type Directory struct {
	Kind          string        `json:"kind"`
	APIVersion    string        `json:"apiVersion"`
	Metadata      DirectoryMeta `json:"metadata"`
	Server        string        `json:"server"`
	ExportRoot    string        `json:"exportRoot"`
	Path          string        `json:"path"`
	Changes       int           `json:"changes"`
	FirstChangeAt time.Time     `json:"firstChangeAt"`
	LastChangeAt  time.Time     `json:"lastChangeAt"`
	Rescan        bool          `json:"rescan"`
}

// DirectoryMeta gives receivers the uid/resourceVersion they key on.
type DirectoryMeta struct {
	Name            string `json:"name"`
	UID             string `json:"uid"`
	ResourceVersion string `json:"resourceVersion"`
}

// Payload turns a change into the common event envelope.
func (c Change) Payload(server, exportRoot, cluster string) (event.Payload, error) {
	rv := strconv.FormatInt(c.LastChangeAt.UnixNano(), 10)
	d := Directory{
		Kind: event.KindNFSDirectory, APIVersion: APIVersion,
		Metadata: DirectoryMeta{Name: filepath.Base(c.Dir), UID: server + ":" + c.Dir, ResourceVersion: rv},
		Server:   server, ExportRoot: exportRoot, Path: c.Dir, Changes: c.Changes,
		FirstChangeAt: c.FirstChangeAt.UTC(), LastChangeAt: c.LastChangeAt.UTC(), Rescan: c.Rescan,
	}
	res, err := json.Marshal(d)
	if err != nil {
		return event.Payload{}, fmt.Errorf("encode directory: %w", err)
	}
	return event.Payload{
		Schema: event.Schema, ID: event.ID(d.Metadata.UID, rv, event.Modified), Type: event.Modified,
		Kind: event.KindNFSDirectory, APIVersion: APIVersion, Cluster: cluster,
		ObservedAt: time.Now().UTC(), Resource: res,
	}, nil
}

// Poster delivers one encoded payload (pkg/sender's Sender).
type Poster interface {
	Send(ctx context.Context, body []byte) error
}

// Forward runs w and delivers each change. While the endpoint is slow or
// down, changes of the same directory merge (memory is bounded by the number
// of PV directories) and the watcher keeps reading the kernel queue.
func Forward(ctx context.Context, w *Watcher, post Poster, server, cluster string, log *zap.Logger) error {
	changes := make(chan Change, 256)
	werr := make(chan error, 1)
	go func() { werr <- w.Run(ctx, changes) }()

	var mu sync.Mutex
	merged := map[string]Change{}
	wake := make(chan struct{}, 1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case c := <-changes:
				mu.Lock()
				if old, ok := merged[c.Dir]; ok {
					c.Changes += old.Changes
					c.FirstChangeAt = old.FirstChangeAt
					c.Rescan = c.Rescan || old.Rescan
				}
				merged[c.Dir] = c
				mu.Unlock()
				select {
				case wake <- struct{}{}:
				default:
				}
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return <-werr
		case err := <-werr:
			return err
		case <-wake:
		}
		for {
			mu.Lock()
			dirs := make([]string, 0, len(merged))
			for d := range merged {
				dirs = append(dirs, d)
			}
			sort.Strings(dirs)
			if len(dirs) == 0 {
				mu.Unlock()
				break
			}
			c := merged[dirs[0]]
			delete(merged, dirs[0])
			mu.Unlock()
			p, err := c.Payload(server, w.cfg.Root, cluster)
			if err != nil {
				return err
			}
			body, _ := json.Marshal(p)
			err = post.Send(ctx, body)
			var perm *sender.PermanentError
			switch {
			case err == nil:
				log.Info("directory change delivered", zap.String("dir", c.Dir), zap.Int("changes", c.Changes), zap.Bool("rescan", c.Rescan))
			case errors.As(err, &perm):
				log.Error("endpoint rejected a directory change; not retried", zap.String("dir", c.Dir), zap.String("reason", perm.Reason),
					zap.Int("status", perm.Status), zap.String("response", perm.Body))
			default:
				return <-werr
			}
		}
	}
}
