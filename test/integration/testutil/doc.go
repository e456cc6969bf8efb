// Package testutil holds the small helpers the integration framework, the
// stand-ins and the tests share, with no control plane behind them:
// certificate authorities and the certificates they issue, and tar archives
// (building them, and extracting them safely).
package testutil
