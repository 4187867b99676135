package adminapi

import (
	"errors"
	"strings"
	"testing"
)

func FuzzLBBodies(f *testing.F) {
	f.Add(`{"addr":"127.0.0.1:3000","weight":2}`)
	f.Add(`{"weight":256}`)
	f.Add(`{"timeout":"10s"}`)
	f.Add(`{"on":true,"retry_after":"30s"}`)
	f.Add(`{"addr":"[::1]:80"}`)
	f.Add(`{} []`)
	f.Add(``)
	f.Fuzz(func(t *testing.T, body string) {
		check := func(err error) {
			if err != nil && !errors.Is(err, ErrBadRequest) {
				t.Fatalf("error not classified as bad request: %v", err)
			}
		}
		var tb targetBody
		if err := decodeJSON(strings.NewReader(body), &tb); err != nil {
			check(err)
		} else {
			check(tb.check())
		}
		var wb weightBody
		if err := decodeJSON(strings.NewReader(body), &wb); err != nil {
			check(err)
		} else if err := wb.check(); err == nil && (*wb.Weight < 1 || *wb.Weight > 256) {
			t.Fatalf("weight %d accepted", *wb.Weight)
		} else {
			check(err)
		}
		var db drainBody
		if err := decodeJSON(strings.NewReader(body), &db); err != nil {
			check(err)
		} else if d, err := db.timeout(); err == nil && (d < 0 || d > maxDrain) {
			t.Fatalf("timeout %v accepted", d)
		} else {
			check(err)
		}
		var mb maintenanceBody
		if err := decodeJSON(strings.NewReader(body), &mb); err != nil {
			check(err)
		} else if d, err := mb.check(); err == nil && (mb.On == nil || d < 0) {
			t.Fatalf("maintenance body %q accepted as %v", body, d)
		} else {
			check(err)
		}
	})
}
