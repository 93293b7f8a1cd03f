package forwarder

import (
	"sync"

	"k8s.io/client-go/util/workqueue"
)

// item is the newest unsent state of one object.
type item struct {
	payload []byte // encoded event
	typ     string
}

// pending holds, per object (by uid), the newest state not yet delivered.
// Memory is bounded by the number of objects, not by how long the endpoint
// is down: a newer change replaces an older unsent one, and a deletion
// replaces everything before it. The workqueue guarantees that one object is
// sent by one worker at a time, in order, and that an object changed while
// being sent is sent again afterwards.
type pending struct {
	mu    sync.Mutex
	items map[string]item
	queue workqueue.TypedInterface[string]
}

func newPending() *pending {
	return &pending{items: map[string]item{}, queue: workqueue.NewTyped[string]()}
}

// put records the newest state of key and schedules it.
func (p *pending) put(key string, it item) (coalesced bool) {
	p.mu.Lock()
	_, coalesced = p.items[key]
	p.items[key] = it
	p.mu.Unlock()
	p.queue.Add(key)
	return coalesced
}

// next blocks until a key is ready; ok is false after shutdown.
func (p *pending) next() (string, item, bool) {
	for {
		key, shutdown := p.queue.Get()
		if shutdown {
			return "", item{}, false
		}
		p.mu.Lock()
		it, ok := p.items[key]
		delete(p.items, key)
		p.mu.Unlock()
		if !ok {
			// Already sent by an earlier pass of this key.
			p.queue.Done(key)
			continue
		}
		return key, it, true
	}
}

// done releases key; if it changed meanwhile, the queue hands it out again.
func (p *pending) done(key string) { p.queue.Done(key) }

// requeue puts back an unsent state unless a newer one arrived.
func (p *pending) requeue(key string, it item) {
	p.mu.Lock()
	if _, newer := p.items[key]; !newer {
		p.items[key] = it
	}
	p.mu.Unlock()
	p.queue.Add(key)
}

// depth is the number of objects with unsent state.
func (p *pending) depth() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.items)
}

func (p *pending) shutdown() { p.queue.ShutDown() }

// count is the number of objects whose unsent state is of type typ.
func (p *pending) count(typ string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, it := range p.items {
		if it.typ == typ {
			n++
		}
	}
	return n
}

// putIfAbsent schedules it unless key already has an unsent state.
func (p *pending) putIfAbsent(key string, it item) {
	p.mu.Lock()
	if _, ok := p.items[key]; ok {
		p.mu.Unlock()
		return
	}
	p.items[key] = it
	p.mu.Unlock()
	p.queue.Add(key)
}
