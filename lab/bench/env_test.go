package bench

import (
	"os"
	"strings"
	"testing"
)

func TestProcMemKiBOfThisProcess(t *testing.T) {
	rss, hwm, err := procMemKiB(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if rss < 1024 || hwm < rss {
		t.Errorf("VmRSS %d KiB, VmHWM %d KiB: want at least 1 MiB and a peak no lower", rss, hwm)
	}
}

func TestLoadAvgHasThreeFigures(t *testing.T) {
	if got := strings.Fields(loadAvg()); len(got) != 3 {
		t.Errorf("loadAvg() = %q, want three averages", got)
	}
}
