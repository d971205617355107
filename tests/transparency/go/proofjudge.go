// proofjudge checks a .tlog-proof file (c2sp.org/tlog-proof) that envx served, with Go's own
// transparency-log code (golang.org/x/mod/sumdb/note and sumdb/tlog), none of it written for envx.
//
//	go run proofjudge.go FILE VERIFIER_KEY ORIGIN
//
// A file holds one proof, or several one after the other (a restoration certificate's entries; each
// starts at a line "c2sp.org/tlog-proof@v1"). For each: note.Open verifies the checkpoint with the log's
// key (cosignature lines are of keys it does not know, which note.Open ignores), the body is read as a
// C2SP checkpoint (origin, size, root), and tlog.CheckRecord checks the inclusion path of the record hash
// at the index. The record hash is tlog.RecordHash(extra) -- SHA-256(0x00 || entry) -- or, when the extra
// data is a search certificate (JSON), its certificate.ledger_head.leaf_hash. Witness cosignatures
// (cosignature/v1) are not checked here: x/mod has no verifier for them.
// Exit 0 and "OK ..." per proof on success; exit 1 and "FAIL ..." otherwise.
package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const header = "c2sp.org/tlog-proof@v1"

func fail(format string, args ...interface{}) {
	fmt.Printf("FAIL "+format+"\n", args...)
	os.Exit(1)
}

func b64(s, what string) []byte {
	raw, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		fail("%s is not base64: %v", what, err)
	}
	return raw
}

func check(text string, verifier note.Verifier, origin string) string {
	head, checkpoint, ok := strings.Cut(text, "\n\n")
	if !ok {
		fail("no checkpoint after the proof lines")
	}
	lines := strings.Split(head, "\n")
	if lines[0] != header {
		fail("first line is not %s", header)
	}
	lines = lines[1:]
	var extra []byte
	if len(lines) > 0 && strings.HasPrefix(lines[0], "extra ") {
		extra = b64(strings.TrimPrefix(lines[0], "extra "), "extra data")
		lines = lines[1:]
	}
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "index ") {
		fail("no index line")
	}
	index, err := strconv.ParseInt(strings.TrimPrefix(lines[0], "index "), 10, 64)
	if err != nil || index < 0 || strconv.FormatInt(index, 10) != strings.TrimPrefix(lines[0], "index ") {
		fail("bad index line %q", lines[0])
	}
	var proof tlog.RecordProof
	for _, l := range lines[1:] {
		var h tlog.Hash
		raw := b64(l, "inclusion proof line")
		if len(raw) != tlog.HashSize {
			fail("inclusion proof line is not a hash")
		}
		copy(h[:], raw)
		proof = append(proof, h)
	}
	n, err := note.Open([]byte(checkpoint), note.VerifierList(verifier))
	if err != nil {
		fail("checkpoint: %v", err)
	}
	body := strings.Split(n.Text, "\n")
	if len(body) < 4 || body[0] != origin {
		fail("checkpoint origin is not %s", origin)
	}
	size, err := strconv.ParseInt(body[1], 10, 64)
	if err != nil {
		fail("checkpoint size: %v", err)
	}
	var root tlog.Hash
	copy(root[:], b64(body[2], "root hash"))
	var record tlog.Hash
	what := "entry"
	if bytes.HasPrefix(extra, []byte(`{"certificate":`)) {
		var answer struct {
			Certificate struct {
				LedgerHead struct {
					Seq      int64  `json:"seq"`
					LeafHash string `json:"leaf_hash"`
				} `json:"ledger_head"`
			} `json:"certificate"`
		}
		if err := json.Unmarshal(extra, &answer); err != nil {
			fail("search certificate: %v", err)
		}
		if answer.Certificate.LedgerHead.Seq != index+1 {
			fail("search certificate read at seq %d, proof of index %d", answer.Certificate.LedgerHead.Seq, index)
		}
		copy(record[:], b64(answer.Certificate.LedgerHead.LeafHash, "leaf_hash"))
		what = "search certificate's ledger head"
	} else {
		record = tlog.RecordHash(extra)
	}
	if err := tlog.CheckRecord(proof, size, root, index, record); err != nil {
		fail("inclusion of index %d in the tree of size %d: %v", index, size, err)
	}
	return fmt.Sprintf("OK %s %d in %s size %d signed by %s", what, index, origin, size, n.Sigs[0].Name)
}

func main() {
	if len(os.Args) != 4 {
		fail("usage: proofjudge FILE VERIFIER_KEY ORIGIN")
	}
	data, err := os.ReadFile(os.Args[1])
	if err != nil {
		fail("%v", err)
	}
	verifier, err := note.NewVerifier(os.Args[2])
	if err != nil {
		fail("verifier key: %v", err)
	}
	text := string(data)
	var parts []string
	for {
		at := strings.Index(text[1:], "\n"+header+"\n")
		if at < 0 {
			parts = append(parts, text)
			break
		}
		parts = append(parts, text[:at+2])
		text = text[at+2:]
	}
	var out []string
	for _, p := range parts {
		out = append(out, check(p, verifier, os.Args[3]))
	}
	fmt.Println(strings.Join(out, "\n"))
}
