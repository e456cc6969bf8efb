/*
Copyright The Wukong Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package plugin

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/novasphere/wukong/pkg/client/transfers"
)

// newProgress returns a progress bar (bytes, rate, ETA) on w when w is a
// terminal and quiet is off; otherwise a progress that shows nothing.
func newProgress(w io.Writer, quiet bool, desc string) transfers.Progress {
	f, ok := w.(*os.File)
	if quiet || !ok || !term.IsTerminal(int(f.Fd())) {
		return silent{}
	}
	return &bar{w: w, desc: desc}
}

type silent struct{}

func (silent) Start(int64, int64) {}
func (silent) Add(int)            {}

// bar draws a progressbar/v3 bar once the size is known.
type bar struct {
	w    io.Writer
	desc string
	once sync.Once
	b    *progressbar.ProgressBar
	// spins counts the spinner's frames; a line is drawn while > 0.
	spins int
}

// spinner is the frames of the line shown while the server prepares a disk.
var spinner = []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}

// Waiting redraws the wait's line in place, until the bar replaces it.
func (p *bar) Waiting(message string) {
	if p.b != nil {
		return
	}
	fmt.Fprintf(p.w, "\r\x1b[K%s %s: %s", spinner[p.spins%len(spinner)], p.desc, message)
	p.spins++
}

func (p *bar) Start(total, done int64) {
	if p.b != nil {
		_ = p.b.Set64(done) // a transfer that starts again (a CDI upload retried from byte 0)
		return
	}
	p.once.Do(func() {
		if p.spins > 0 {
			fmt.Fprint(p.w, "\r\x1b[K")
		}
		p.b = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(p.w),
			progressbar.OptionSetDescription(p.desc),
			progressbar.OptionShowBytes(true),
			progressbar.OptionShowCount(),
			progressbar.OptionShowTotalBytes(true),
			progressbar.OptionUseIECUnits(true),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(p.w) }),
		)
		if done > 0 {
			_ = p.b.Set64(done)
		}
	})
}

func (p *bar) Add(n int) {
	if p.b != nil {
		_ = p.b.Add(n)
	}
}

// finish completes the bar (streams of unknown size end here).
func finish(p transfers.Progress) {
	b, ok := p.(*bar)
	switch {
	case ok && b.b != nil:
		_ = b.b.Finish()
	case ok && b.spins > 0:
		fmt.Fprintln(b.w) // keep the last wait line, end it
	}
}
