package api

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/mirrord/mirrord/internal/hosted"
	"github.com/mirrord/mirrord/internal/store"
	"github.com/mirrord/mirrord/internal/sync"
)

// httpError is an error that knows its status: request problems found by
// the API itself.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

func errorf(code int, msg string) error { return &httpError{code: code, msg: msg} }

// status maps an error to its HTTP status: the one place that does.
func status(err error) int {
	var he *httpError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &he):
		return he.code
	case errors.As(err, &mbe), errors.Is(err, hosted.ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, hosted.ErrNotFound), errors.Is(err, store.ErrNotFound), errors.Is(err, sync.ErrUnknownRepo):
		return http.StatusNotFound
	case errors.Is(err, hosted.ErrOlderVersion):
		return http.StatusConflict
	case errors.Is(err, hosted.ErrInvalid):
		return http.StatusUnprocessableEntity
	case errors.Is(err, hosted.ErrBusy):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// fail writes err as JSON with its status, and logs what is the server's
// fault (a 5xx), once, here.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	code, msg := status(err), err.Error()
	if code >= 500 && code != http.StatusServiceUnavailable {
		h.log.Error("api request", "method", r.Method, "path", r.URL.Path, "err", err)
		msg = "internal error: " + msg
	} else {
		h.log.Debug("api request refused", "method", r.Method, "path", r.URL.Path, "status", code, "err", err)
	}
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="mirrord"`)
	}
	writeJSON(w, code, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		slog.Debug("write api response", "err", err)
	}
}
