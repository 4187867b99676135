package lb

import (
	"testing"

	"github.com/shoal-dev/shoal/internal/pool"
)

// TestChanged: AddPool, SetRoutes, a pool's target changes made through
// the Pool itself, Reload and RemovePool each close the channel that
// Changed returned before them; Config reflects them.
func TestChanged(t *testing.T) {
	b, err := New(Config{Listeners: []Listener{{Name: "http", Addr: "127.0.0.1:0"}}})
	if err != nil {
		t.Fatal(err)
	}
	fired := func(what string, ch <-chan struct{}) {
		t.Helper()
		select {
		case <-ch:
		default:
			t.Fatalf("%s: no change notified", what)
		}
	}
	ch := b.Changed()
	select {
	case <-ch:
		t.Fatal("notified before any change")
	default:
	}
	if err := b.AddPool(PoolConfig{Name: "web"}); err != nil {
		t.Fatal(err)
	}
	fired("AddPool", ch)

	ch = b.Changed()
	if err := b.SetRoutes([]Route{{Name: "web", Pool: "web"}}); err != nil {
		t.Fatal(err)
	}
	fired("SetRoutes", ch)
	if c := b.Config(); len(c.Routes) != 1 || len(c.Pools) != 1 || c.Routes[0].PathPrefix != "/" {
		t.Fatalf("Config: routes %+v pools %+v", c.Routes, c.Pools)
	}

	p, _ := b.Pool("web")
	ch = b.Changed()
	if err := p.Add(pool.TargetSpec{Addr: "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	fired("Pool.Add", ch)
	ch = b.Changed()
	if _, err := p.Drain("127.0.0.1:1", 0); err != nil {
		t.Fatal(err)
	}
	fired("Pool.Drain", ch)

	ch = b.Changed()
	cfg := b.Config()
	cfg.Routes = nil
	if err := b.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	fired("Reload", ch)
	ch = b.Changed()
	if err := b.RemovePool("web"); err != nil {
		t.Fatal(err)
	}
	fired("RemovePool", ch)
}
