// tvm-gocache: a GOCACHEPROG for the go command (Go 1.24+) that answers from a
// read-only build cache baked into the image and keeps what the sandbox's own
// builds add in a writable directory of the sandbox.
//
//	tvm-gocache [-ro DIR] [-rw DIR]
//
// -ro defaults to /usr/local/lib/tvm-gocache (where the image build puts it),
// -rw to $GOCACHE/prog (the go command passes its environment on).
// Both directories hold a/<action id> (one line: "<output id> <size> <unix ns>")
// and o/<output id> (the output's bytes). A get looks in -rw, then -ro; a put
// writes to -rw only. The go command keys every entry by an action id that
// hashes the compiler, flags, environment and sources, so an entry is only
// ever found by a build that would have produced the very same bytes.
package main

import (
	"bufio"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

type request struct {
	ID       int64
	Command  string
	ActionID []byte `json:",omitempty"`
	OutputID []byte `json:",omitempty"`
	BodySize int64  `json:",omitempty"`
}

type response struct {
	ID            int64
	Err           string     `json:",omitempty"`
	KnownCommands []string   `json:",omitempty"`
	Miss          bool       `json:",omitempty"`
	OutputID      []byte     `json:",omitempty"`
	Size          int64      `json:",omitempty"`
	Time          *time.Time `json:",omitempty"`
	DiskPath      string     `json:",omitempty"`
}

type cache struct{ ro, rw string }

func (c cache) get(action []byte) response {
	if len(action) == 0 {
		return response{Miss: true}
	}
	name := hex.EncodeToString(action)
	for _, dir := range []string{c.rw, c.ro} {
		if dir == "" {
			continue
		}
		line, err := os.ReadFile(filepath.Join(dir, "a", name))
		if err != nil {
			continue
		}
		fields := strings.Fields(string(line))
		if len(fields) != 3 {
			continue
		}
		output, err1 := hex.DecodeString(fields[0])
		size, err2 := strconv.ParseInt(fields[1], 10, 64)
		nanos, err3 := strconv.ParseInt(fields[2], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		path := filepath.Join(dir, "o", fields[0])
		if info, err := os.Stat(path); err != nil || info.Size() != size {
			continue
		}
		t := time.Unix(0, nanos)
		return response{OutputID: output, Size: size, Time: &t, DiskPath: path}
	}
	return response{Miss: true}
}

func (c cache) put(action, output []byte, body []byte) (response, error) {
	if len(action) == 0 || len(output) == 0 {
		return response{}, errors.New("put without an action or output id")
	}
	out := hex.EncodeToString(output)
	path := filepath.Join(c.rw, "o", out)
	if err := writeFile(path, body); err != nil {
		return response{}, err
	}
	now := time.Now()
	line := fmt.Sprintf("%s %d %d\n", out, len(body), now.UnixNano())
	if err := writeFile(filepath.Join(c.rw, "a", hex.EncodeToString(action)), []byte(line)); err != nil {
		return response{}, err
	}
	return response{DiskPath: path}, nil
}

// writeFile writes data to path through a temporary file and a rename, so
// that a reader never sees a partial entry.
func writeFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	if err2 := tmp.Chmod(0o644); err == nil {
		err = err2
	}
	if err2 := tmp.Close(); err == nil {
		err = err2
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

func main() {
	ro := flag.String("ro", "/usr/local/lib/tvm-gocache", "read-only cache directory (the image's)")
	rw := flag.String("rw", "", "writable cache directory (default $GOCACHE/prog)")
	flag.Parse()
	if *rw == "" && os.Getenv("GOCACHE") != "" {
		*rw = filepath.Join(os.Getenv("GOCACHE"), "prog")
	}
	if *rw == "" {
		fmt.Fprintln(os.Stderr, "tvm-gocache: -rw DIR or $GOCACHE is required")
		os.Exit(2)
	}
	for _, sub := range []string{"a", "o"} {
		if err := os.MkdirAll(filepath.Join(*rw, sub), 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "tvm-gocache:", err)
			os.Exit(1)
		}
	}
	if err := serve(cache{ro: *ro, rw: *rw}, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "tvm-gocache:", err)
		os.Exit(1)
	}
}

func serve(c cache, in io.Reader, out io.Writer) error {
	w := bufio.NewWriter(out)
	enc := json.NewEncoder(w)
	reply := func(r response) error {
		if err := enc.Encode(r); err != nil {
			return err
		}
		return w.Flush()
	}
	if err := reply(response{KnownCommands: []string{"get", "put", "close"}}); err != nil {
		return err
	}
	dec := json.NewDecoder(bufio.NewReader(in))
	for {
		var req request
		if err := dec.Decode(&req); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		var res response
		switch req.Command {
		case "get":
			res = c.get(req.ActionID)
		case "put":
			var body []byte
			if req.BodySize > 0 {
				var encoded string
				if err := dec.Decode(&encoded); err != nil {
					return fmt.Errorf("put %d: reading the body: %w", req.ID, err)
				}
				var err error
				if body, err = base64.StdEncoding.DecodeString(encoded); err != nil {
					return fmt.Errorf("put %d: %w", req.ID, err)
				}
			}
			if int64(len(body)) != req.BodySize {
				res.Err = fmt.Sprintf("body of %d bytes, announced %d", len(body), req.BodySize)
				break
			}
			var err error
			if res, err = c.put(req.ActionID, req.OutputID, body); err != nil {
				res.Err = err.Error()
			}
		case "close":
			res.ID = req.ID
			return reply(res)
		default:
			res.Err = "unknown command " + strconv.Quote(req.Command)
		}
		res.ID = req.ID
		if err := reply(res); err != nil {
			return err
		}
	}
}
