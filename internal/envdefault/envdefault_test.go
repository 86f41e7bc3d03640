package envdefault_test

import (
	"testing"
	"time"

	"github.com/kvstack/kvstack/internal/envdefault"
)

func TestOfTakesEveryEnvDefault(t *testing.T) {
	type conf struct {
		Addr string        `env:"ENVDEFAULT_TEST_ADDR" envDefault:"127.0.0.1:1"`
		Wait time.Duration `env:"ENVDEFAULT_TEST_WAIT" envDefault:"1500ms"`
		N    int           `env:"ENVDEFAULT_TEST_N"`
	}
	t.Setenv("ENVDEFAULT_TEST_N", "7") // the process environment is not read
	got := envdefault.Of[conf]()
	if want := (conf{Addr: "127.0.0.1:1", Wait: 1500 * time.Millisecond}); got != want {
		t.Fatalf("Of = %+v, want %+v", got, want)
	}
}

func TestOfPanicsOnABrokenTag(t *testing.T) {
	type broken struct {
		N int `env:"ENVDEFAULT_TEST_BROKEN" envDefault:"many"`
	}
	defer func() {
		if recover() == nil {
			t.Fatal("Of did not panic on an unparsable default")
		}
	}()
	envdefault.Of[broken]()
}
