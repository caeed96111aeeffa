package fakessh_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/seed-a176d0ab/mitogen-go/core"
	"github.com/seed-a176d0ab/mitogen-go/internal/testhosts"
)

// scp and sftp started by another program (by name, from a shell) go
// through fakessh too: the host name resolves nowhere, so only our ssh can
// serve it (the real scp/sftp would run /usr/bin/ssh, which fails).
func TestNestedScpSftp(t *testing.T) {
	testhosts.Need(t, "scp", "sftp")
	forChains(t, func(t *testing.T, dest *core.Context) {
		dir := t.TempDir()
		src := filepath.Join(dir, "src")
		data := make([]byte, 256<<10+3)
		rand.Read(data)
		if err := os.WriteFile(src, data, 0o644); err != nil {
			t.Fatal(err)
		}
		remote := t.TempDir()
		batch := filepath.Join(dir, "batch")
		os.WriteFile(batch, []byte(fmt.Sprintf("put %s %s/sftp\n", src, remote)), 0o644)
		script := fmt.Sprintf("scp -q -O %s nosuch.invalid:%s/legacy && scp -q %s nosuch.invalid:%s/scp && sftp -q -b %s nosuch.invalid",
			src, remote, src, remote, batch)
		st, out, errs := runUnder(t, dest, nil, nil, "sh", "-c", script)
		if st != 0 {
			t.Fatalf("sh -c scp/sftp: status %d: %s %s", st, out, errs)
		}
		for _, f := range []string{"legacy", "scp", "sftp"} {
			if got, _ := os.ReadFile(filepath.Join(remote, f)); !bytes.Equal(got, data) {
				t.Errorf("%s: copy differs (%d bytes)", f, len(got))
			}
		}
	})
}
