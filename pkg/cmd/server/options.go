package server

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/novasphere/wukong/pkg/apiserver"
)

// WukongOptions are wukong-apiserver's own flags.
type WukongOptions struct {
	MaxFileSize             string
	TransferRecordRetention time.Duration
	TransferStaleAfter      time.Duration
	SSHDialTimeout          time.Duration
}

// NewWukongOptions returns the defaults.
func NewWukongOptions() *WukongOptions {
	return &WukongOptions{
		MaxFileSize:             "0",
		TransferRecordRetention: 24 * time.Hour,
		TransferStaleAfter:      time.Minute,
		SSHDialTimeout:          15 * time.Second,
	}
}

// AddFlags registers the flags.
func (o *WukongOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.MaxFileSize, "max-file-size", o.MaxFileSize,
		"Largest file or archive one request may move through wukongs/files, as a quantity (e.g. 50Gi); 0 means no server-wide limit. A Wukong's spec.fileTransfer.maxFileSize can only lower it.")
	fs.DurationVar(&o.TransferRecordRetention, "transfer-record-retention", o.TransferRecordRetention,
		"How long finished WukongFileTransfer records are kept; 0 keeps them forever.")
	fs.DurationVar(&o.TransferStaleAfter, "transfer-stale-after", o.TransferStaleAfter,
		"A Transferring record whose progress nobody wrote for this long (its server stopped) is ended Failed. Running transfers write at least every quarter of it.")
	fs.DurationVar(&o.SSHDialTimeout, "ssh-dial-timeout", o.SSHDialTimeout,
		"Time allowed to reach a guest's SSH server and complete the handshake.")
}

// Validate checks the flags.
func (o *WukongOptions) Validate() []error {
	var errs []error
	if q, err := resource.ParseQuantity(o.MaxFileSize); err != nil || q.Sign() < 0 {
		errs = append(errs, fmt.Errorf("--max-file-size %q must be a non-negative quantity such as 50Gi", o.MaxFileSize))
	}
	if o.TransferRecordRetention < 0 {
		errs = append(errs, fmt.Errorf("--transfer-record-retention must not be negative"))
	}
	if o.TransferStaleAfter < 4*time.Second {
		errs = append(errs, fmt.Errorf("--transfer-stale-after must be at least 4s"))
	}
	if o.SSHDialTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--ssh-dial-timeout must be positive"))
	}
	return errs
}

// ApplyTo fills Wukong's part of the server configuration.
func (o *WukongOptions) ApplyTo(c *apiserver.ExtraConfig) error {
	q, err := resource.ParseQuantity(o.MaxFileSize)
	if err != nil {
		return err
	}
	c.MaxFileSize = q.Value()
	c.TransferRecordRetention = o.TransferRecordRetention
	c.TransferStaleAfter = o.TransferStaleAfter
	c.SSHDialTimeout = o.SSHDialTimeout
	return nil
}
