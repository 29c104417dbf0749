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
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/mirrord/mirrord/config"
	"github.com/mirrord/mirrord/internal/accesslog"
	"github.com/mirrord/mirrord/internal/api"
	"github.com/mirrord/mirrord/internal/catalog"
	"github.com/mirrord/mirrord/internal/cluster"
	"github.com/mirrord/mirrord/internal/evict"
	"github.com/mirrord/mirrord/internal/hosted"
	"github.com/mirrord/mirrord/internal/proxy"
	"github.com/mirrord/mirrord/internal/store"
	"github.com/mirrord/mirrord/internal/web"
)

func main() {
	if err := rootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "mirrord:", err)
		os.Exit(1)
	}
}

// serveCommand is `mirrord serve`.
func serveCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the tree, the API and the web UI; run the syncs and publish jobs",
		Long: `Serves the tree of repos over HTTP, with the API and the web UI, and runs
the mirror repos' syncs and the hosted repos' publish jobs. With no config
file it starts on the defaults (see mirrord config).`,
		Args: checkArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return serve(cmd.Flags()) },
	}
	config.Flags(cmd.Flags())
	config.ListenFlag(cmd.Flags())
	completeConfigFlags(cmd)
	return cmd
}

// hasHosted reports whether cat has a hosted repo.
func hasHosted(cat *catalog.Catalog) bool {
	for _, r := range cat.Repos() {
		if r.Mode == config.ModeHosted {
			return true
		}
	}
	return false
}

func serve(flags *pflag.FlagSet) error {
	cfg, err := loadConfig(flags)
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
	log.Info("repos", repoList(cat.Repos()))
	upstreams, err := catalog.NewWatcher(cat) // before "serving": no later change of an upstreams_file is missed
	if err != nil {
		return err
	}
	defer upstreams.Close() // Run closes it too; this is for a return before Run
	evictor := evict.New(st, cat, evict.Options{MaxSize: int64(cfg.DiskCacheSize()), KeepVersions: cfg.Cache.KeepVersions,
		Logger: log.With("component", "evict"), Registerer: reg})

	hopts := hosted.Options{
		SigningPassphrase: []byte(os.Getenv("MIRRORD_HOSTED_SIGNING_PASSPHRASE")),
		Logger:            log.With("component", "hosted"),
		Registerer:        reg,
	}
	var pub api.Publisher
	var runPub func(context.Context) error
	var cpub *clusterPublisher // the hosted repos of a cluster, or nil
	if c.cluster != nil && hasHosted(cat) {
		if cpub, err = newClusterPublisher(cfg, c, st, hopts); err != nil {
			return err
		}
		pub, runPub = cpub, cpub.Run
	} else {
		svc, err := hosted.New(cat, st, hopts)
		if err != nil {
			return err
		}
		pub, runPub = svc, svc.Run
	}
	admin, err := adminToken(cfg, log)
	if err != nil {
		return err
	}

	apiH := api.New(cat, st, api.Options{Publisher: pub, Syncer: sched, Prefetch: c.prefetch, InFlight: fetcher.Flights().Len, AdminToken: admin,
		Logger: log.With("component", "api"), Registerer: reg})
	counts := proxy.NewMetrics(reg, cat, fetcher.Flights())
	ui, err := web.New(cat, apiH, st, web.Options{Traffic: trafficSource{counts, fetcher}, Logger: log.With("component", "web")})
	if err != nil {
		return err
	}
	popts := proxy.Options{Fetcher: fetcher, Index: ui.Index(), Metrics: counts, Requests: c.prefetch,
		Logger: log.With("component", "proxy"), Registerer: reg}
	if c.bucket != nil && cfg.Storage.S3.Redirect {
		popts.Redirect, popts.RedirectExpiry = c.bucket, cfg.Storage.S3.RedirectExpiry
	}
	var apiRoute, uiRoute http.Handler = apiH, ui
	var gather prometheus.Gatherer = reg
	if cpub != nil {
		popts.HostedForward = cpub.forward
		apiRoute, uiRoute = cpub.forwarding(apiH), cpub.forwarding(ui)
		gather = prometheus.Gatherers{reg, cpub}
	}
	tree, err := proxy.New(cat, st, popts)
	if err != nil {
		return err
	}

	ready := newReadiness()
	var peers http.Handler
	if c.cluster != nil {
		peers = c.cluster.Handler(tree)
		log.Info("cluster", "node", cfg.Cluster.Node, "advertise", cfg.Cluster.Advertise, "peers", c.cluster.Live())
	}
	mux := routes(promhttp.HandlerFor(gather, promhttp.HandlerOpts{Registry: reg}), ready, apiRoute, uiRoute, tree, peers)
	var access *accesslog.Logger
	if cfg.Log.Access {
		access = accesslog.New(os.Stderr, cfg.Log.Format)
		defer access.Flush()
	}
	srv := newServer(cfg.Server, proxy.Guard(mux), tree.AppendHit, log, access)

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
	g.Go(func() error { return c.prefetch.Run(ctx) })
	g.Go(func() error { return upstreams.Run(ctx) })
	g.Go(func() error { return runPub(ctx) }) // returns after its last db build
	if c.cluster != nil {
		g.Go(func() error { return c.cluster.Run(ctx) })
	}
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
		if c.cluster != nil {
			// Peers check /readyz every second: let them see the 503 and
			// move this node's files before its listener closes.
			time.Sleep(cluster.DrainDelay)
		}
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
