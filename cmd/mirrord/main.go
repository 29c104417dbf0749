// Command mirrord serves a tree of pacman repositories: mirrored, proxied
// and hosted. See README.md for the commands and docs/ARCHITECTURE.md for
// how the pieces fit.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/mirrord/mirrord/internal/api"
	"github.com/mirrord/mirrord/internal/catalog"
	"github.com/mirrord/mirrord/internal/evict"
	"github.com/mirrord/mirrord/internal/hosted"
	"github.com/mirrord/mirrord/internal/proxy"
	"github.com/mirrord/mirrord/internal/store"
	"github.com/mirrord/mirrord/internal/web"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mirrord:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		return serve(rest)
	case "sync":
		return syncCommand(rest)
	case "publish":
		return publishCommand(rest)
	case "delete":
		return deleteCommand(rest)
	case "token":
		return tokenCommand(rest)
	case "config":
		return printConfig(rest)
	case "version", "--version":
		fmt.Println("mirrord", version())
		return nil
	case "help", "-h", "--help":
		fmt.Println(usage)
		return nil
	default:
		return fmt.Errorf("unknown command %q\n%s", cmd, usage)
	}
}

const usage = `usage:
  mirrord serve   [--config FILE] [--listen ADDR] [--data-dir DIR]
  mirrord sync    [--config FILE] [DISTRO[/REPO]...]   one-shot sync with progress
  mirrord publish --url URL [--token T | --token-file F] [--force] [--wait] DISTRO/REPO FILE.pkg.tar.zst...
  mirrord delete  --url URL [--token T | --token-file F] [--arch A] DISTRO/REPO NAME
  mirrord token   [--name N] [--repo DISTRO/REPO...]   a new token and its api.tokens line
  mirrord config  [--config FILE]     print the effective config
  mirrord version`

func serve(args []string) error {
	cfg, err := loadConfig("serve", args)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildInfo())

	st, err := store.Open(cfg.DataDir, store.Options{
		MemorySize:  int64(cfg.Cache.MemorySize),
		PrivateTree: cfg.Storage.TreeMode == "private",
		Logger:      log.With("component", "store"),
		Registerer:  reg,
	})
	if err != nil {
		return err
	}
	defer st.Close() // after the server has drained: badger closes cleanly

	c, err := newCore(cfg, st, log, reg)
	if err != nil {
		return err
	}
	defer c.up.Close()
	cat, fetcher, sched := c.catalog, c.fetcher, c.sched
	upstreams, err := catalog.NewWatcher(cat) // before "serving": no later change of an upstreams_file is missed
	if err != nil {
		return err
	}
	defer upstreams.Close() // Run closes it too; this is for a return before Run
	evictor := evict.New(st, cat, evict.Options{MaxSize: int64(cfg.Cache.MaxSize), KeepVersions: cfg.Cache.KeepVersions,
		Logger: log.With("component", "evict"), Registerer: reg})

	pub, err := hosted.New(cat, st, hosted.Options{
		SigningPassphrase: []byte(os.Getenv("MIRRORD_HOSTED_SIGNING_PASSPHRASE")),
		Logger:            log.With("component", "hosted"),
		Registerer:        reg,
	})
	if err != nil {
		return err
	}
	admin, err := adminToken(cfg, log)
	if err != nil {
		return err
	}

	apiH := api.New(cat, st, api.Options{Publisher: pub, Syncer: sched, InFlight: fetcher.Flights().Len, AdminToken: admin,
		Logger: log.With("component", "api"), Registerer: reg})
	counts := proxy.NewMetrics(reg, cat, fetcher.Flights())
	ui, err := web.New(cat, apiH, st, web.Options{Traffic: trafficSource{counts, fetcher}, Logger: log.With("component", "web")})
	if err != nil {
		return err
	}
	tree, err := proxy.New(cat, st, proxy.Options{Fetcher: fetcher, Index: ui.Index(), Metrics: counts,
		Logger: log.With("component", "proxy"), Registerer: reg})
	if err != nil {
		return err
	}

	ready := newReadiness()
	mux := routes(promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}), ready, apiH, ui, tree)
	srv := newServer(cfg.Server, proxy.Guard(mux), tree.AppendHit, log)

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return st.Run(ctx) })
	g.Go(func() error { return evictor.Run(ctx) })
	g.Go(func() error { return sched.Run(ctx) })
	g.Go(func() error { return upstreams.Run(ctx) })
	g.Go(func() error { return pub.Run(ctx) }) // returns after its last db build
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		ready.set(false)
		sdNotify("STOPPING=1")
		log.Info("shutting down")
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := srv.Shutdown(sctx) // in-flight responses finish first
		fetcher.Shutdown(sctx)    // then fills nobody waits for any more (the sync's too: ctx ended)
		return err
	})
	ready.set(true)
	sdNotify("READY=1")
	log.Info("serving", "listen", ln.Addr().String(), "data_dir", cfg.DataDir, "config", cfg.File, "version", version())
	return g.Wait()
}
