package e2e

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/mirrord/mirrord"

// TestImportRules keeps the package layering of docs/ARCHITECTURE.md: the
// leaves import nothing of the project, the catalog knows no serving
// package, and each outside library that needs care has one importer.
func TestImportRules(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}|{{join .Imports " "}}|{{join .Deps " "}}`, module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	imports, deps := map[string][]string{}, map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		parts := strings.Split(line, "|")
		if len(parts) != 3 {
			t.Fatalf("go list line %q", line)
		}
		imports[parts[0]], deps[parts[0]] = strings.Fields(parts[1]), strings.Fields(parts[2])
	}
	own := func(p string) bool { return p == module || strings.HasPrefix(p, module+"/") }
	for _, leaf := range []string{"internal/alpm", "internal/lockfree"} {
		for _, d := range deps[module+"/"+leaf] {
			if own(d) {
				t.Errorf("%s depends on %s: it must import nothing of the project", leaf, d)
			}
		}
	}
	serving := []string{"internal/proxy", "internal/fastpath", "internal/web", "internal/api", "internal/hosted", "internal/sync"}
	for _, d := range deps[module+"/internal/catalog"] {
		if own(d) && slices.Contains(serving, strings.TrimPrefix(d, module+"/")) {
			t.Errorf("internal/catalog depends on the serving package %s", d)
		}
	}
	only := map[string]string{ // an outside module -> its one importer
		"github.com/dgraph-io/badger/v4":  "internal/store",
		"github.com/ProtonMail/go-crypto": "internal/pgp",
		"github.com/minio/minio-go/v7":    "internal/store/s3obj",
	}
	testOnly := []string{"internal/s3test", "internal/store/objtest"} // imported by tests alone
	for pkg, imps := range imports {
		for _, imp := range imps {
			if strings.HasPrefix(imp, module+"/cmd/") {
				t.Errorf("%s imports %s: nothing imports a command", pkg, imp)
			}
			if own(imp) && slices.Contains(testOnly, strings.TrimPrefix(imp, module+"/")) {
				t.Errorf("%s imports %s: only tests may", pkg, imp)
			}
			for lib, owner := range only {
				if (imp == lib || strings.HasPrefix(imp, lib+"/")) && pkg != module+"/"+owner {
					t.Errorf("%s imports %s: only %s may", pkg, imp, owner)
				}
			}
		}
	}
	// The listing is real: the proxy routes through the catalog.
	if !slices.Contains(deps[module+"/internal/proxy"], module+"/internal/catalog") {
		t.Fatalf("go list says internal/proxy does not depend on internal/catalog: %d packages listed", len(imports))
	}
}
