package outbox

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"testing"
)

// helperCommand re-executes the test binary to run TestHelperProcess in mode
// on the outbox at path.
func helperCommand(t *testing.T, mode, path string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), "OUTBOX_HELPER="+mode, "OUTBOX_HELPER_PATH="+path)
	cmd.Stderr = os.Stderr
	return cmd
}

// readLines yields r's lines until EOF.
func readLines(r io.Reader) func(func(string) bool) {
	return func(yield func(string) bool) {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if !yield(sc.Text()) {
				return
			}
		}
	}
}
