package pool

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func benchPool(b *testing.B, o Options, n int) *Pool {
	o.Name = "bench"
	p := New(o)
	for i := range n {
		mustAdd(b, p, TargetSpec{Addr: addr(i), Weight: i%4 + 1})
	}
	return p
}

func benchPick(b *testing.B, o Options, r *http.Request) {
	p := benchPool(b, o, 10)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		// The key is derived per request, as the balancer does.
		ch, err := p.Pick(keyOf(p, r), nil)
		if err != nil {
			b.Fatal(err)
		}
		ch.Target.Begin()
		ch.Target.End(Outcome{Status: 200, TTFB: time.Millisecond})
	}
}

func BenchmarkPickRoundRobin(b *testing.B)    { benchPick(b, Options{}, nil) }
func BenchmarkPickLeastRequests(b *testing.B) { benchPick(b, Options{Algorithm: LeastRequests}, nil) }
func BenchmarkPickP2C(b *testing.B)           { benchPick(b, Options{Algorithm: P2C}, nil) }

// BenchmarkPickRoundRobinRequest passes a request to a pool without
// stickiness: still no allocation.
func BenchmarkPickRoundRobinRequest(b *testing.B) {
	benchPick(b, Options{}, httptest.NewRequest("GET", "/", nil))
}

func BenchmarkPickSockJS(b *testing.B) {
	benchPick(b, Options{Sticky: Sticky{SockJSPrefixes: []string{"/sockjs"}}},
		httptest.NewRequest("GET", "/sockjs/123/abcdef/xhr_streaming", nil))
}

func BenchmarkPickStickyCookie(b *testing.B) {
	o := Options{Sticky: Sticky{Cookie: "s", Secret: testSecret, TTL: time.Hour}}
	p := benchPool(b, o, 10)
	ch, _ := p.Pick(keyOf(p, httptest.NewRequest("GET", "/", nil)), nil)
	r := httptest.NewRequest("GET", "/", nil)
	r.AddCookie(ch.Cookie)
	benchPick(b, o, r)
}

func BenchmarkPickParallel(b *testing.B) {
	for _, algo := range []Algorithm{RoundRobin, LeastRequests, P2C} {
		b.Run(algo.String(), func(b *testing.B) {
			p := benchPool(b, Options{Algorithm: algo}, 10)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					ch, err := p.Pick(nil, nil)
					if err != nil {
						panic(err)
					}
					ch.Target.Begin()
					ch.Target.End(Outcome{Status: 200, TTFB: time.Millisecond})
				}
			})
		})
	}
}

// BenchmarkPickLarge is one pick, Begin and End at 1 to 1,000 targets: the
// cost of each algorithm as the pool grows.
func BenchmarkPickLarge(b *testing.B) {
	for _, n := range []int{1, 10, 100, 1000} {
		for _, algo := range []Algorithm{RoundRobin, LeastRequests, P2C} {
			b.Run(fmt.Sprintf("%s/%d", algo, n), func(b *testing.B) {
				p := benchPool(b, Options{Algorithm: algo}, n)
				b.ReportAllocs()
				for b.Loop() {
					ch, _ := p.Pick(nil, nil)
					ch.Target.Begin()
					ch.Target.End(Outcome{Status: 200, TTFB: time.Millisecond})
				}
			})
		}
	}
}
