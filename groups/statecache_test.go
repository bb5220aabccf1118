package groups

import (
	"bytes"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/epochs"
	"github.com/mls-appservice/mls-appservice/mls/group"
	"github.com/mls-appservice/mls-appservice/mls/group/grouptest"
)

// testStatic decodes the static part of a fresh group of n members (a
// distinct epoch each call).
func testStatic(t *testing.T, n int) (*group.Static, []byte, []byte) {
	t.Helper()
	g, err := grouptest.Build(testSuite, n, true)
	if err != nil {
		t.Fatal(err)
	}
	m, err := g.Member(0, group.Config{})
	if err != nil {
		t.Fatal(err)
	}
	pub := m.Public()
	static, err := pub.MarshalStatic()
	if err != nil {
		t.Fatal(err)
	}
	init, err := pub.MarshalInitState()
	if err != nil {
		t.Fatal(err)
	}
	tree, err := pub.MarshalSecretTree()
	if err != nil {
		t.Fatal(err)
	}
	st, err := group.UnmarshalStatic(static)
	if err != nil {
		t.Fatal(err)
	}
	return st, init, tree
}

func TestStaticCache(t *testing.T) {
	room := id.RoomID("!room:example.org")
	a, _, _ := testStatic(t, 4)
	b, _, _ := testStatic(t, 4)
	c, cInit, cTree := testStatic(t, 4)
	key := func(st *group.Static) epochs.ID { return epochs.ID(st.EpochID()) }

	cache := newStaticCache(staticCost(a) + staticCost(b))
	cache.put(room, key(a), a)
	cache.put(room, key(b), b)
	if _, ok := cache.get(room, key(a)); !ok {
		t.Fatal("a not kept")
	}
	// a was used last: c pushes b out.
	cache.put(room, key(c), c)
	if _, ok := cache.get(room, key(b)); ok {
		t.Error("b kept past the budget though used least recently")
	}
	if got, ok := cache.get(room, key(a)); !ok || got != a {
		t.Error("a pushed out though used more recently than b")
	}
	if _, ok := cache.get(id.RoomID("!other:example.org"), key(a)); ok {
		t.Error("an entry found under another room")
	}
	if cache.used > cache.budget {
		t.Errorf("%d bytes kept, budget %d", cache.used, cache.budget)
	}

	// A Public built from a cached part survives the part's erasure.
	pub, err := c.Public(cInit, cTree)
	if err != nil {
		t.Fatal(err)
	}
	before, err := pub.Export("test", nil, 32)
	if err != nil {
		t.Fatal(err)
	}
	cache.drop(room, []epochs.ID{key(c)})
	if _, ok := cache.get(room, key(c)); ok {
		t.Error("a dropped epoch is still kept")
	}
	if after, err := pub.Export("test", nil, 32); err != nil || !bytes.Equal(after, before) {
		t.Errorf("a Public's exporter changed when the part it was built from was erased (%v)", err)
	}
	if erased, err := c.Public(cInit, cTree); err == nil {
		if e, _ := erased.Export("test", nil, 32); bytes.Equal(e, before) {
			t.Error("a dropped part's secrets were not erased")
		}
	}
	fresh, _, _ := testStatic(t, 4)
	if again, err := fresh.Public(cInit, cTree); err == nil {
		again.Destroy()
		t.Error("parts of another epoch accepted")
	}

	none := newStaticCache(0)
	none.put(room, key(a), a)
	if none.len() != 0 {
		t.Error("a cache of no bytes kept an entry")
	}
}
