package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
)

// The compressible bodies of bench/compress.sh, made once at start from a
// fixed seed so that every run and every proxy gets the same bytes:
//
//	/compress/bundle.js  about 2 MB of JavaScript (a Meteor-like bundle)
//	/compress/data.json  about 1 MB of JSON records
//	/compress/page.js    50 KB of JavaScript
//
// Their text is drawn at random from vocabularies of keywords and
// minified names, so gzip at level 1 shrinks the JavaScript about 2.5
// times and the JSON about 3 times, near what it does to real bundles
// and API answers, not hundreds of times as it would a repeated string.
func serveAssets(mux *http.ServeMux) {
	rng := rand.New(rand.NewPCG(18, 2026))
	bundle := javaScript(rng, 2<<20)
	for name, a := range map[string]struct {
		body []byte
		typ  string
	}{
		"bundle.js": {bundle, "application/javascript"},
		"page.js":   {bundle[:50<<10], "application/javascript"},
		"data.json": {jsonRecords(rng, 1<<20), "application/json"},
	} {
		mux.HandleFunc("/compress/"+name, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", a.typ)
			w.Header().Set("Content-Length", strconv.Itoa(len(a.body)))
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
			w.Write(a.body)
		})
	}
}

var jsWords = []string{"function", "return", "const", "let", "var", "if", "else", "for", "while", "new", "this",
	"typeof", "undefined", "null", "true", "false", "Object", "Array", "prototype", "module", "exports", "require",
	"Meteor", "Tracker", "ReactiveVar", "Template", "React", "createElement", "props", "state", "setState",
	"document", "window", "addEventListener", "length", "push", "map", "filter", "reduce", "forEach", "call", "apply"}

// identifiers are minified-looking names, a few hundred of them as in a
// bundle's scopes.
var identifiers = func() []string {
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_$"
	rng := rand.New(rand.NewPCG(1, 2))
	out := make([]string, 150)
	for i := range out {
		b := make([]byte, 1+rng.IntN(3))
		for j := range b {
			b[j] = letters[rng.IntN(len(letters))]
		}
		out[i] = string(b)
	}
	return out
}()

func identifier(rng *rand.Rand) string { return identifiers[rng.IntN(len(identifiers))] }

func javaScript(rng *rand.Rand, size int) []byte {
	var b bytes.Buffer
	for b.Len() < size {
		switch rng.IntN(6) {
		case 0:
			fmt.Fprintf(&b, "function %s(%s,%s){", identifier(rng), identifier(rng), identifier(rng))
		case 1:
			fmt.Fprintf(&b, "var %s=%s.%s(%d);", identifier(rng), identifier(rng), jsWords[rng.IntN(len(jsWords))], rng.IntN(64))
		case 2:
			fmt.Fprintf(&b, "if(%s===%q)return %s;", identifier(rng), jsWords[rng.IntN(len(jsWords))], identifier(rng))
		case 3:
			fmt.Fprintf(&b, "%s.%s=%s.%s||{};", identifier(rng), jsWords[rng.IntN(len(jsWords))], identifier(rng), jsWords[rng.IntN(len(jsWords))])
		case 4:
			fmt.Fprintf(&b, "}%s", []string{";", ",", "\n", ")"}[rng.IntN(4)])
		default:
			fmt.Fprintf(&b, "%s(%q,%d,%s);", jsWords[rng.IntN(len(jsWords))], identifier(rng)+identifier(rng), rng.IntN(16), jsWords[rng.IntN(len(jsWords))])
		}
	}
	return b.Bytes()[:size]
}

func jsonRecords(rng *rand.Rand, size int) []byte {
	var b bytes.Buffer
	b.WriteString("[")
	for i := 0; b.Len() < size-200; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"_id":"%016x","owner":"%s%s","createdAt":%d,"score":%.3f,"tags":[%q,%q],"done":%v}`,
			rng.Uint64(), identifier(rng), identifier(rng), 1700000000000+rng.IntN(1e9), rng.Float64()*100,
			jsWords[rng.IntN(len(jsWords))], jsWords[rng.IntN(len(jsWords))], rng.IntN(2) == 0)
	}
	b.WriteString("]\n")
	return b.Bytes()
}
