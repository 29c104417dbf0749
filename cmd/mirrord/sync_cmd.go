package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mirrord/mirrord/config"
	"github.com/mirrord/mirrord/internal/store"
	"github.com/mirrord/mirrord/internal/sync"
)

// syncCommand is `mirrord sync`.
func syncCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sync [DISTRO[/REPO]...]",
		Short: "Sync mirror repos once, with progress",
		Long: `Syncs the named mirror repos once (every mirror repo when none is named),
with a progress bar on a terminal and log lines otherwise. It opens the data
dir itself, so it cannot run beside mirrord serve on the same one: ask the
daemon instead (POST /api/v1/sync/DISTRO[/REPO]).`,
		ValidArgsFunction: completeMirrorRepos,
		RunE:              func(cmd *cobra.Command, args []string) error { return runSync(cmd.Flags(), args) },
	}
	config.Flags(cmd.Flags())
	completeConfigFlags(cmd)
	return cmd
}

// completeMirrorRepos completes sync's arguments with the mirror repos of
// the config (and their distros).
func completeMirrorRepos(cmd *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
	cfg, err := loadConfig(cmd.Flags())
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var names []string
	for dn, d := range cfg.Distros {
		distro := false
		for rn, r := range d.Repos {
			if r.Mode == config.ModeMirror {
				names, distro = append(names, dn+"/"+rn), true
			}
		}
		if distro {
			names = append(names, dn)
		}
	}
	slices.Sort(names)
	return names, cobra.ShellCompDirectiveNoFileComp
}

// runSync is one sync of the mirror repos named by targets (DISTRO or
// DISTRO/REPO), of all of them when there is none.
func runSync(flags *pflag.FlagSet, targets []string) error {
	cfg, err := loadConfig(flags)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log)
	reg := prometheus.NewRegistry() // nobody scrapes a one-shot run; the collectors still need a home
	st, err := store.Open(cfg.DataDir, store.Options{PrivateTree: cfg.Storage.TreeMode == "private", Logger: log.With("component", "store"), Registerer: reg})
	if err != nil {
		// badger locks its folder: a running `mirrord serve` holds it.
		return fmt.Errorf("%w (if mirrord serve runs on this data dir, ask it instead: POST /api/v1/sync/DISTRO[/REPO])", err)
	}
	defer st.Close()
	// A one-shot sync fetches what it needs itself: it runs no health
	// checks, so a dead owner would cost a timeout per file.
	cfg.Cluster = config.Cluster{}
	c, err := newCore(cfg, st, log, reg)
	if err != nil {
		return err
	}
	defer c.up.Close()
	fetcher, sched := c.fetcher, c.sched
	var repos [][2]string
	for _, a := range targets {
		d, r, _ := strings.Cut(a, "/")
		if _, err := sched.Repos(d, r); err != nil || d == "" {
			return fmt.Errorf("%s: %w", a, sync.ErrUnknownRepo)
		}
		repos = append(repos, [2]string{d, r})
	}
	if len(repos) == 0 {
		repos = [][2]string{{"", ""}}
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if isTerminal(os.Stderr) {
		stopBar, barDone := make(chan struct{}), make(chan struct{})
		defer func() { close(stopBar); <-barDone }() // the bar ends its line before we return
		go func() { drawProgress(os.Stderr, sched, stopBar); close(barDone) }()
	}
	var errs []error
	for _, t := range repos {
		if err := sched.Sync(ctx, t[0], t[1]); err != nil {
			errs = append(errs, err)
		}
	}
	// Fills run detached from ctx: end them before the store closes,
	// and give uploads to the shared storage a while to finish.
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := fetcher.Shutdown(sctx); err != nil {
		log.Warn("uploads to the shared storage cut short: the next node to want those files fetches them upstream", "err", err)
	}
	return errors.Join(errs...)
}

// drawProgress redraws the status line of the running sync five times a
// second until stop is closed.
func drawProgress(w io.Writer, sched *sync.Scheduler, stop <-chan struct{}) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	type sample struct {
		at    time.Time
		bytes int64
	}
	var first sample
	drawn := false
	for {
		select {
		case <-stop:
			if drawn {
				fmt.Fprintln(w)
			}
			return
		case now := <-tick.C:
			for _, st := range sched.States() {
				if !st.Running || st.Progress == nil {
					continue
				}
				p := st.Progress
				if first.at.IsZero() || p.BytesDone < first.bytes {
					first = sample{now, p.BytesDone}
				}
				rate := 0.0
				if d := now.Sub(first.at).Seconds(); d > 0.5 {
					rate = float64(p.BytesDone-first.bytes) / d
				}
				eta := "--:--"
				if rate > 0 && p.BytesTotal > p.BytesDone {
					s := int(float64(p.BytesTotal-p.BytesDone) / rate)
					eta = fmt.Sprintf("%02d:%02d", s/60, s%60)
				}
				fmt.Fprintf(w, "\r\033[K%s  %d/%d files  %s/%s  %s/s  ETA %s", st.Repo, p.FilesDone, p.FilesTotal,
					human(p.BytesDone), human(p.BytesTotal), human(int64(rate)), eta)
				drawn = true
			}
		}
	}
}
