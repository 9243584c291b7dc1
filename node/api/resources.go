package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/picketmon/picket/etcdx"
	"github.com/picketmon/picket/events"
)

// route is a parsed resource path.
type route struct {
	kind events.Kind
	// ns is the namespace of a namespaced request, "" for cluster-wide kinds and for
	// cross-namespace lists.
	ns string
	// name is the resource's name; for events "entity/check" or "entity" (a list).
	name string
	// template is the path with variables replaced, for metrics labels.
	template string
}

// collection reports whether the route names a list rather than one resource.
func (rt route) collection() bool {
	if rt.kind.Plural == "events" {
		return !strings.Contains(rt.name, "/")
	}
	return rt.name == ""
}

// prefix is the etcd prefix that holds the route's collection, ending in "/".
func (rt route) prefix() string {
	parts := []string{rt.kind.Plural}
	if rt.ns != "" {
		parts = append(parts, rt.ns)
	}
	if rt.kind.Plural == "events" && rt.name != "" && !strings.Contains(rt.name, "/") {
		parts = append(parts, rt.name)
	}
	return etcdx.Key(parts...) + "/"
}

func resourceKey(k events.Kind, ns, name string) string {
	parts := []string{k.Plural}
	if k.Namespaced {
		parts = append(parts, ns)
	}
	return etcdx.Key(append(parts, strings.Split(name, "/")...)...)
}

// parseResourcePath maps a path below /api/core/v2/ to a route. ok is false when the
// path names no resource.
func parseResourcePath(rest string) (route, error) {
	segs := strings.Split(strings.Trim(rest, "/"), "/")
	lookup := func(plural string) (events.Kind, error) {
		for _, k := range events.Kinds() {
			if k.Plural == plural {
				return k, nil
			}
		}
		return events.Kind{}, errorf(http.StatusNotFound, "unknown resource type %q; valid types: %s", plural, strings.Join(events.KindNames(), ", "))
	}
	switch {
	case len(segs) >= 3 && segs[0] == "namespaces":
		k, err := lookup(segs[2])
		if err != nil {
			return route{}, err
		}
		if !k.Namespaced {
			return route{}, errorf(http.StatusNotFound, "%s are not namespaced; use /api/core/v2/%s", k.Plural, k.Plural)
		}
		rt := route{kind: k, ns: segs[1], name: strings.Join(segs[3:], "/"), template: "/api/core/v2/namespaces/{ns}/" + k.Plural}
		maxSegs := 4
		if k.Plural == "events" {
			maxSegs = 5
		}
		if len(segs) > maxSegs {
			return route{}, errorf(http.StatusNotFound, "no such route: /api/core/v2/%s", rest)
		}
		if rt.name != "" {
			rt.template += "/{name}"
		}
		return rt, nil
	case len(segs) >= 1:
		k, err := lookup(segs[0])
		if err != nil {
			return route{}, err
		}
		if len(segs) > 2 || (k.Namespaced && len(segs) > 1) {
			return route{}, errorf(http.StatusNotFound, "no such route: /api/core/v2/%s; namespaced resources live under /api/core/v2/namespaces/{ns}/%s", rest, k.Plural)
		}
		rt := route{kind: k, template: "/api/core/v2/" + k.Plural}
		if len(segs) == 2 {
			rt.name = segs[1]
			rt.template += "/{name}"
		}
		return rt, nil
	}
	return route{}, errorf(http.StatusNotFound, "no such route: /api/core/v2/%s", rest)
}

// serveResource handles every verb on a parsed resource route.
func (s *Server) serveResource(w http.ResponseWriter, r *http.Request, rt route, p *Principal) error {
	v := verbWrite
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		v = verbRead
	}
	if !allowed(p.Role, v, rt.kind.Plural) {
		return errorf(http.StatusForbidden, "user %s (role %s) may not %s %s", p.Username, roleName(p.Role), verbName(v), rt.kind.Plural)
	}
	ctx := r.Context()
	switch {
	case rt.collection() && r.Method == http.MethodGet:
		return s.list(w, r, rt, p)
	case rt.collection() && r.Method == http.MethodPost:
		if rt.kind.Namespaced && rt.ns == "" {
			return errorf(http.StatusMethodNotAllowed, "create %s under /api/core/v2/namespaces/{ns}/%s", rt.kind.Plural, rt.kind.Plural)
		}
		res, err := s.decodeBody(w, r, rt, p)
		if err != nil {
			return err
		}
		if err := s.create(ctx, rt, res); err != nil {
			return err
		}
		if k, ok := res.(*events.APIKey); ok {
			w.Header().Set("Location", "/api/core/v2/apikeys/"+k.Metadata.Name)
		}
		w.WriteHeader(http.StatusCreated)
		return nil
	case rt.collection():
		return errorf(http.StatusMethodNotAllowed, "%s is not allowed on a collection; use GET or POST", r.Method)
	}

	key := resourceKey(rt.kind, rt.ns, rt.name)
	switch r.Method {
	case http.MethodGet:
		kv, err := s.store.Get(ctx, key)
		if err != nil {
			return s.notFound(err, rt)
		}
		w.Header().Set("ETag", strconv.Quote(strconv.FormatInt(kv.ModRevision, 10)))
		val, err := s.present(rt.kind, kv.Value, p)
		if err != nil {
			return err
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(val)
		return nil
	case http.MethodPut:
		res, err := s.decodeBody(w, r, rt, p)
		if err != nil {
			return err
		}
		if name := events.StoreName(res); name != rt.name {
			return &httpError{status: http.StatusBadRequest, msg: fmt.Sprintf("metadata.name %q does not match the name %q in the URL", name, rt.name),
				fields: []events.FieldError{{Field: "metadata.name", Message: "must match the name in the URL"}}}
		}
		if err := s.put(ctx, rt, res, ifMatch(r)); err != nil {
			return err
		}
		w.WriteHeader(http.StatusCreated)
		return nil
	case http.MethodPatch:
		out, err := s.patch(w, r, rt, p)
		if err != nil {
			return err
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(out)
		return nil
	case http.MethodDelete:
		if err := s.delete(ctx, rt, p); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return errorf(http.StatusMethodNotAllowed, "%s is not allowed here; use GET, PUT, PATCH or DELETE", r.Method)
}

func roleName(r Role) string {
	if r == roleNone {
		return "none"
	}
	return string(r)
}

func verbName(v verb) string {
	if v == verbRead {
		return "read"
	}
	return "write"
}

func (s *Server) notFound(err error, rt route) error {
	if errors.Is(err, etcdx.ErrNotFound) {
		where := ""
		if rt.ns != "" {
			where = " in namespace " + rt.ns
		}
		return errorf(http.StatusNotFound, "%s %q not found%s", singular(rt.kind), rt.name, where)
	}
	return err
}

func singular(k events.Kind) string { return k.Type }

// ifMatch returns the mod revision an If-Match header asks for, 0 when absent.
func ifMatch(r *http.Request) int64 {
	h := strings.Trim(strings.TrimPrefix(r.Header.Get("If-Match"), "W/"), `"`)
	n, _ := strconv.ParseInt(h, 10, 64)
	return n
}

// list answers a page of a collection as a JSON array, with the continue token in the
// Sensu-Continue header.
func (s *Server) list(w http.ResponseWriter, r *http.Request, rt route, p *Principal) error {
	var limit int64
	if l := r.URL.Query().Get("limit"); l != "" {
		n, err := strconv.ParseInt(l, 10, 64)
		if err != nil || n < 0 {
			return &httpError{status: http.StatusBadRequest, msg: fmt.Sprintf("limit %q must be a positive whole number", l),
				fields: []events.FieldError{{Field: "limit", Message: "must be a positive whole number"}}}
		}
		limit = n
	}
	if rt.ns != "" {
		if err := s.namespaceExists(r.Context(), rt.ns); err != nil {
			return err
		}
	}
	kvs, next, err := s.store.List(r.Context(), rt.prefix(), limit, r.URL.Query().Get("continue"))
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i, kv := range kvs {
		if i > 0 {
			buf.WriteByte(',')
		}
		val, err := s.present(rt.kind, kv.Value, p)
		if err != nil {
			return err
		}
		buf.Write(val)
	}
	buf.WriteString("]\n")
	if next != "" {
		w.Header().Set("Sensu-Continue", next)
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(buf.Bytes())
	return nil
}

// storedForm encodes a resource as it is stored: events by StoredEvent, the rest as JSON.
func storedForm(res events.Resource) ([]byte, error) {
	if ev, ok := res.(*events.Event); ok {
		return StoredEvent(ev)
	}
	return json.Marshal(res)
}

// StoredEvent encodes ev as every event is stored (by the API and the monitors' fenced
// writes; agents' results go through the grouped writer, CompactEvent): compact,
// without its empty fields (30 % fewer bytes; the API shows stored events in full
// again), and compressed against a dictionary of what events share (a quarter to a half
// of the bytes again; etcdx.Compress). Both cut what etcd copies, logs, writes and
// compacts per event.
//
// The JSON is encoded into a buffer reused from event to event: only the compressed
// value, a quarter to a half of its size, is allocated.
func StoredEvent(ev *events.Event) ([]byte, error) {
	bp := storedBufs.Get().(*[]byte)
	b, err := ev.AppendCompact((*bp)[:0])
	var out []byte
	if err == nil {
		out = etcdx.Compress(b)
	}
	if cap(b) <= maxStoredBuf {
		*bp = b
		storedBufs.Put(bp)
	}
	return out, err
}

// CompactEvent encodes ev as StoredEvent does, but leaves the compression to the
// grouped writer (etcdx.CondPut.Compress): the JSON is in memory of its own.
func CompactEvent(ev *events.Event) ([]byte, error) {
	return ev.AppendCompact(make([]byte, 0, 2048))
}

// storedBufs holds StoredEvent's buffers; maxStoredBuf bounds those kept (an event with
// a large output is encoded in a buffer of its own).
var storedBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

const maxStoredBuf = 64 << 10

// present turns a stored value into its API form: users lose their password hash
// except for cluster admins, who need it for dump and restore; events, stored compact,
// get back the fields left out as empty (one that does not decode is shown as stored).
func (s *Server) present(k events.Kind, val []byte, p *Principal) ([]byte, error) {
	if k.Plural == "events" {
		val = etcdx.Decompress(val) // as stored (storedForm), or as read
		if etcdx.Compressed(val) {
			return nil, fmt.Errorf("a stored event is corrupt: its compressed value does not decode")
		}
		ev := &events.Event{}
		if ev.UnmarshalJSON(val) != nil {
			return val, nil
		}
		return ev.MarshalJSON()
	}
	if k.Plural != "users" || p.Role == RoleClusterAdmin {
		return val, nil
	}
	u := &events.User{}
	if err := json.Unmarshal(val, u); err != nil {
		return nil, err
	}
	u.PasswordHash = ""
	return json.Marshal(u)
}

// decodeBody reads a resource from a request body, bounded by maxBody, fills in
// defaults from the route, and validates it.
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, rt route, p *Principal) (events.Resource, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		return nil, err
	}
	return s.prepare(body, rt, p)
}

func (s *Server) prepare(body []byte, rt route, p *Principal) (events.Resource, error) {
	res := rt.kind.New()
	if err := json.Unmarshal(body, res); err != nil {
		return nil, &httpError{status: http.StatusBadRequest, msg: fmt.Sprintf("request body is not a valid %s: %v", rt.kind.Type, err)}
	}
	meta := res.Meta()
	if rt.kind.Namespaced {
		if meta.Namespace != "" && meta.Namespace != rt.ns {
			return nil, &httpError{status: http.StatusBadRequest, msg: fmt.Sprintf("metadata.namespace %q does not match the namespace %q in the URL", meta.Namespace, rt.ns),
				fields: []events.FieldError{{Field: "metadata.namespace", Message: "must match the namespace in the URL"}}}
		}
	}
	if !rt.collection() && meta.Name == "" && rt.kind.Plural != "events" {
		meta.Name = rt.name
	}
	if k, ok := res.(*events.APIKey); ok && k.Metadata.Name == "" {
		k.Metadata.Name = randomUUID()
		if k.CreatedAt == 0 {
			k.CreatedAt = time.Now().Unix()
		}
	}
	events.SetDefaults(res, rt.ns)
	if meta := res.Meta(); meta.CreatedBy == "" {
		meta.CreatedBy = p.Username
	}
	if si, ok := res.(*events.Silenced); ok && si.Creator == "" {
		si.Creator = p.Username
	}
	if err := res.Validate(); err != nil {
		return nil, err
	}
	if u, ok := res.(*events.User); ok && u.Password != "" {
		h, err := HashPassword(u.Password)
		if err != nil {
			return nil, err
		}
		u.PasswordHash, u.Password = h, ""
	}
	return res, nil
}

func (s *Server) namespaceExists(ctx context.Context, ns string) error {
	if _, err := s.store.Get(ctx, etcdx.Key("namespaces", ns)); err != nil {
		if errors.Is(err, etcdx.ErrNotFound) {
			return errorf(http.StatusNotFound, "namespace %q does not exist; create it first (POST /api/core/v2/namespaces)", ns)
		}
		return err
	}
	return nil
}

func (s *Server) checkReferences(ctx context.Context, rt route, res events.Resource) error {
	if rt.kind.Namespaced {
		if err := s.namespaceExists(ctx, rt.ns); err != nil {
			return err
		}
	}
	if h, ok := res.(*events.Handler); ok && h.Type == events.HandlerSet {
		if err := s.checkSetLoop(ctx, rt, h); err != nil {
			return err
		}
	}
	if u := events.UnsupportedFields(res); len(u) > 0 {
		// Written all the same, as Sensu would; the API has no warnings to answer with.
		s.log.Warn("resource sets fields Picket does not act on", "kind", rt.kind.Type, "namespace", rt.ns,
			"name", res.Meta().Name, "fields", strings.Join(u, "; "))
	}
	if k, ok := res.(*events.APIKey); ok {
		if _, err := s.store.Get(ctx, etcdx.Key("users", k.Username)); err != nil {
			if errors.Is(err, etcdx.ErrNotFound) {
				return &httpError{status: http.StatusBadRequest, msg: fmt.Sprintf("user %q does not exist", k.Username),
					fields: []events.FieldError{{Field: "username", Message: "must name an existing user"}}}
			}
			return err
		}
	}
	return nil
}

// checkSetLoop refuses a set handler that would close a loop through the sets stored in
// its namespace (a set naming itself is refused by Validate): the pipeline would skip
// the loop at run time, so the operator is told now. Sets written at the same moment
// can still close one; the pipeline reports that when it meets it.
func (s *Server) checkSetLoop(ctx context.Context, rt route, h *events.Handler) error {
	kvs, _, err := s.store.ListAll(ctx, etcdx.Key(rt.kind.Plural, rt.ns)+"/")
	if err != nil {
		return err
	}
	sets := map[string][]string{}
	for _, kv := range kvs {
		var stored events.Handler
		if json.Unmarshal(kv.Value, &stored) == nil && stored.Type == events.HandlerSet {
			sets[stored.Metadata.Name] = stored.Handlers
		}
	}
	name := h.Metadata.Name
	sets[name] = h.Handlers
	// A path from one of h's members back to h is a loop.
	var path []string
	seen := map[string]bool{}
	var back func(n string) bool
	back = func(n string) bool {
		path = append(path, n)
		if n == name {
			return true
		}
		if !seen[n] {
			seen[n] = true
			for _, m := range sets[n] {
				if back(m) {
					return true
				}
			}
		}
		path = path[:len(path)-1]
		return false
	}
	for i, m := range h.Handlers {
		path = path[:0]
		if back(m) {
			loop := strings.Join(append([]string{name}, path...), " → ")
			return &httpError{status: http.StatusBadRequest, msg: fmt.Sprintf("handler %q: its set would loop: %s", name, loop),
				fields: []events.FieldError{{Field: fmt.Sprintf("handlers[%d]", i), Message: "closes a loop of handler sets (" + loop + "); remove it or change one of the sets in the loop"}}}
		}
	}
	return nil
}

func (s *Server) create(ctx context.Context, rt route, res events.Resource) error {
	if err := s.checkReferences(ctx, rt, res); err != nil {
		return err
	}
	if ev, ok := res.(*events.Event); ok && s.cfg.StoreEvent != nil && isNewResult(ev) {
		return s.cfg.StoreEvent(ctx, ev)
	}
	val, err := storedForm(res)
	if err != nil {
		return err
	}
	name := events.StoreName(res)
	if _, err := s.store.Create(ctx, resourceKey(rt.kind, rt.ns, name), val); err != nil {
		if errors.Is(err, etcdx.ErrExists) {
			return errorf(http.StatusConflict, "%s %q already exists; use PUT to replace it", rt.kind.Type, name)
		}
		return err
	}
	return nil
}

func (s *Server) put(ctx context.Context, rt route, res events.Resource, rev int64) error {
	if err := s.checkReferences(ctx, rt, res); err != nil {
		return err
	}
	if ev, ok := res.(*events.Event); ok && s.cfg.StoreEvent != nil && rev == 0 && isNewResult(ev) {
		return s.cfg.StoreEvent(ctx, ev)
	}
	key := resourceKey(rt.kind, rt.ns, events.StoreName(res))
	if u, ok := res.(*events.User); ok && u.PasswordHash == "" {
		// A PUT without a password keeps the stored one.
		if old, _, err := etcdx.GetJSON[events.User](ctx, s.store, key); err == nil {
			u.PasswordHash = old.PasswordHash
		}
	}
	val, err := storedForm(res)
	if err != nil {
		return err
	}
	if rev > 0 {
		_, err = s.store.Update(ctx, key, val, rev)
		if errors.Is(err, etcdx.ErrConflict) {
			return errorf(http.StatusPreconditionFailed, "%s %q changed since revision %d; read it again and retry", rt.kind.Type, rt.name, rev)
		}
		return err
	}
	_, err = s.store.Put(ctx, key, val)
	return err
}

// patch applies a JSON merge patch (RFC 7386) with compare-and-swap, retrying when a
// concurrent writer got in between, so no update is silently lost.
func (s *Server) patch(w http.ResponseWriter, r *http.Request, rt route, p *Principal) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		return nil, err
	}
	var patch any
	if err := json.Unmarshal(body, &patch); err != nil {
		return nil, errorf(http.StatusBadRequest, "merge patch is not valid JSON: %v", err)
	}
	want := ifMatch(r)
	key := resourceKey(rt.kind, rt.ns, rt.name)
	ctx := r.Context()
	for attempt := 0; attempt < 5; attempt++ {
		kv, err := s.store.Get(ctx, key)
		if err != nil {
			return nil, s.notFound(err, rt)
		}
		if want > 0 && kv.ModRevision != want {
			return nil, errorf(http.StatusPreconditionFailed, "%s %q changed since revision %d; read it again and retry", rt.kind.Type, rt.name, want)
		}
		var doc any
		if err := json.Unmarshal(kv.Value, &doc); err != nil {
			return nil, err
		}
		merged, err := json.Marshal(mergePatch(doc, patch))
		if err != nil {
			return nil, err
		}
		res, err := s.prepare(merged, rt, p)
		if err != nil {
			return nil, err
		}
		if name := events.StoreName(res); name != rt.name {
			return nil, &httpError{status: http.StatusBadRequest, msg: "a patch may not rename a resource",
				fields: []events.FieldError{{Field: "metadata.name", Message: "may not change"}}}
		}
		val, err := storedForm(res)
		if err != nil {
			return nil, err
		}
		if _, err := s.store.Update(ctx, key, val, kv.ModRevision); err == nil {
			return s.present(rt.kind, val, p)
		} else if !errors.Is(err, etcdx.ErrConflict) {
			return nil, err
		}
	}
	return nil, errorf(http.StatusConflict, "%s %q is being changed by others; retry the patch", rt.kind.Type, rt.name)
}

// mergePatch applies an RFC 7386 merge patch to doc.
func mergePatch(doc, patch any) any {
	pm, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	dm, ok := doc.(map[string]any)
	if !ok {
		dm = map[string]any{}
	}
	for k, v := range pm {
		if v == nil {
			delete(dm, k)
			continue
		}
		dm[k] = mergePatch(dm[k], v)
	}
	return dm
}

func (s *Server) delete(ctx context.Context, rt route, p *Principal) error {
	switch rt.kind.Plural {
	case "namespaces":
		for _, k := range events.Kinds() {
			if !k.Namespaced {
				continue
			}
			kvs, _, err := s.store.List(ctx, etcdx.Key(k.Plural, rt.name)+"/", 1, "")
			if err != nil {
				return err
			}
			if len(kvs) > 0 {
				return errorf(http.StatusConflict, "namespace %q still holds %s; delete them first", rt.name, k.Plural)
			}
		}
	case "users":
		if rt.name == p.Username {
			return errorf(http.StatusConflict, "you cannot delete your own user %q; log in as another admin", rt.name)
		}
	}
	if err := s.store.Delete(ctx, resourceKey(rt.kind, rt.ns, rt.name)); err != nil {
		return s.notFound(err, rt)
	}
	return nil
}

func randomUUID() string {
	raw := mustRandom(16)
	raw[6] = (raw[6] & 0x0f) | 0x40
	raw[8] = (raw[8] & 0x3f) | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", raw[0:4], raw[4:6], raw[6:8], raw[8:10], raw[10:16])
}

// isNewResult tells a new check result written through the API (a script, a proxy
// check) from a stored event being restored (create -f of a dump): a result carries no
// history of its own and goes through state, silencing and handlers; an event with a
// history is stored as given, so a restore keeps it.
func isNewResult(ev *events.Event) bool {
	return ev.Check != nil && len(ev.Check.History) == 0
}
