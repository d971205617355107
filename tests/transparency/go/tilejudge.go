// tilejudge checks an envx log through its C2SP tlog-tiles resources with Go's own transparency-log
// code (golang.org/x/mod/sumdb/note and sumdb/tlog), none of it written for envx.
//
//	go run tilejudge.go BASE_URL VERIFIER_KEY ORIGIN [BEARER_TOKEN]
//
// It verifies /checkpoint's signature, reads hash tiles through tlog.TileHashReader (which checks
// every tile it reads against the signed tree hash), recomputes the tree hash, proves and checks the
// inclusion of leaves around every tile boundary and of random ones, and the consistency of older
// sizes with the checkpoint. With a token it also reads the entry bundles and checks that each entry
// hashes to its leaf. sumdb names tiles tile/8/L/N (height in the path) and bundles tile/8/data/N;
// C2SP drops the height and calls bundles tile/entries/N: the only translation made here.
// Exit 0 and "OK ..." on success; exit 1 and "FAIL ..." otherwise.
package main

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

var base, token string
var fetched int

func fail(format string, args ...interface{}) {
	fmt.Printf("FAIL "+format+"\n", args...)
	os.Exit(1)
}

func get(path string) []byte {
	req, _ := http.NewRequest("GET", base+"/"+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fail("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		fail("GET %s: HTTP %d %s", path, resp.StatusCode, body)
	}
	fetched++
	return body
}

func c2sp(t tlog.Tile) string {
	p := t.Path()
	if t.L == -1 {
		return strings.Replace(p, "tile/8/data/", "tile/entries/", 1)
	}
	return strings.Replace(p, "tile/8/", "tile/", 1)
}

type reader struct{}

func (reader) Height() int { return 8 }
func (reader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		out[i] = get(c2sp(t))
	}
	return out, nil
}
func (reader) SaveTiles([]tlog.Tile, [][]byte) {}

func main() {
	if len(os.Args) < 4 {
		fail("usage: tilejudge BASE_URL VERIFIER_KEY ORIGIN [TOKEN]")
	}
	base, token = strings.TrimRight(os.Args[1], "/"), ""
	if len(os.Args) > 4 {
		token = os.Args[4]
	}
	verifier, err := note.NewVerifier(os.Args[2])
	if err != nil {
		fail("verifier key: %v", err)
	}
	raw := get("checkpoint")
	n, err := note.Open(raw, note.VerifierList(verifier))
	if err != nil {
		fail("checkpoint signature: %v", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 || lines[0] != os.Args[3] {
		fail("checkpoint origin %q is not %q", lines[0], os.Args[3])
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size <= 0 {
		fail("checkpoint size %q", lines[1])
	}
	rootBytes, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(rootBytes) != tlog.HashSize {
		fail("checkpoint root %q", lines[2])
	}
	var root tlog.Hash
	copy(root[:], rootBytes)
	tree := tlog.Tree{N: size, Hash: root}
	hr := tlog.TileHashReader(tree, reader{})

	th, err := tlog.TreeHash(size, hr)
	if err != nil {
		fail("tree hash from tiles: %v", err)
	}
	if th != root {
		fail("tree hash from tiles %v != checkpoint root %v", th, root)
	}

	leafHash := func(i int64) tlog.Hash {
		hs, err := hr.ReadHashes([]int64{tlog.StoredHashIndex(0, i)})
		if err != nil {
			fail("leaf %d: %v", i, err)
		}
		return hs[0]
	}
	rng := rand.New(rand.NewSource(size))
	var indexes []int64
	for b := int64(0); b <= size; b += 256 {
		for _, i := range []int64{b - 1, b, b + 1} {
			if i >= 0 && i < size {
				indexes = append(indexes, i)
			}
		}
	}
	indexes = append(indexes, size-1)
	for k := 0; k < 40; k++ {
		indexes = append(indexes, rng.Int63n(size))
	}
	for _, i := range indexes {
		p, err := tlog.ProveRecord(size, i, hr)
		if err != nil {
			fail("prove record %d: %v", i, err)
		}
		if err := tlog.CheckRecord(p, size, root, i, leafHash(i)); err != nil {
			fail("check record %d: %v", i, err)
		}
	}
	olds := []int64{1, 2, 255, 256, 257, 511, 512, size / 2, size - 1, size}
	for k := 0; k < 20; k++ {
		olds = append(olds, 1+rng.Int63n(size))
	}
	checked := 0
	for _, old := range olds {
		if old < 1 || old > size {
			continue
		}
		oldHash, err := tlog.TreeHash(old, hr)
		if err != nil {
			fail("tree hash %d: %v", old, err)
		}
		p, err := tlog.ProveTree(size, old, hr)
		if err != nil {
			fail("prove tree %d -> %d: %v", old, size, err)
		}
		if err := tlog.CheckTree(p, size, root, old, oldHash); err != nil {
			fail("check tree %d -> %d: %v", old, size, err)
		}
		checked++
	}
	entries := int64(0)
	if token != "" {
		for start := int64(0); start < size; start += 256 {
			w := size - start
			if w > 256 {
				w = 256
			}
			data := get(c2sp(tlog.Tile{H: 8, L: -1, N: start / 256, W: int(w)}))
			r := bytes.NewReader(data)
			for j := int64(0); j < w; j++ {
				var l uint16
				if err := binary.Read(r, binary.BigEndian, &l); err != nil {
					fail("bundle %d: entry %d length: %v", start/256, j, err)
				}
				e := make([]byte, l)
				if _, err := io.ReadFull(r, e); err != nil {
					fail("bundle %d: entry %d: %v", start/256, j, err)
				}
				if tlog.RecordHash(e) != leafHash(start+j) {
					fail("entry %d of the bundle does not hash to leaf %d", j, start+j)
				}
				entries++
			}
			if r.Len() != 0 {
				fail("bundle %d has %d bytes after its %d entries", start/256, r.Len(), w)
			}
		}
	}
	fmt.Printf("OK size %d root %s: tree hash, %d inclusion proofs, %d consistency proofs, %d entries, %d fetches\n",
		size, lines[2], len(indexes), checked, entries, fetched)
}
