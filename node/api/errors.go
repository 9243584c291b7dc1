package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/picketmon/picket/etcdx"
	"github.com/picketmon/picket/events"
)

// apiError is the JSON body of every error answer:
// {"message": "...", "code": <status>, "fields": [{"field","message"}]}.
type apiError struct {
	Message string              `json:"message"`
	Code    int                 `json:"code"`
	Fields  []events.FieldError `json:"fields,omitempty"`
}

// httpError is an error that knows its HTTP status.
type httpError struct {
	status int
	msg    string
	fields []events.FieldError
}

func (e *httpError) Error() string { return e.msg }

func errorf(status int, format string, a ...any) error {
	return &httpError{status: status, msg: fmt.Sprintf(format, a...)}
}

// writeError maps an error to its status and JSON body. Store sentinels become 404/409,
// validation errors 400 with the fields named, anything else 500.
func writeError(w http.ResponseWriter, err error) {
	body := apiError{Message: err.Error(), Code: http.StatusInternalServerError}
	var he *httpError
	var ve events.ValidationError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &he):
		body.Code, body.Fields = he.status, he.fields
	case errors.As(err, &ve):
		body.Code, body.Fields = http.StatusBadRequest, []events.FieldError(ve)
		body.Message = "invalid resource: " + ve.Error()
	case errors.As(err, &mbe):
		body.Code = http.StatusRequestEntityTooLarge
		body.Message = fmt.Sprintf("request body is larger than %d bytes; split the request or shrink the resource", mbe.Limit)
	case errors.Is(err, etcdx.ErrNotFound):
		body.Code = http.StatusNotFound
	case errors.Is(err, etcdx.ErrExists), errors.Is(err, etcdx.ErrConflict):
		body.Code = http.StatusConflict
	case errors.Is(err, etcdx.ErrBadContinue):
		body.Code = http.StatusBadRequest
	}
	writeJSON(w, body.Code, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
