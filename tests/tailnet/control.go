// A control server for tests: tailscale's own testcontrol plus its DERP/STUN, on one address.
package main

import (
	"encoding/json"
	"flag"
	"log"
	"net"
	"net/http"
	"testing"

	"tailscale.com/tailcfg"
	"tailscale.com/tstest/integration"
	"tailscale.com/tstest/integration/testcontrol"
)

type tb struct{ testing.TB }

func (tb) Helper()                   {}
func (tb) Logf(f string, a ...any)   { log.Printf(f, a...) }
func (tb) Fatal(a ...any)            { log.Fatal(a...) }
func (tb) Fatalf(f string, a ...any) { log.Fatalf(f, a...) }
func (tb) Errorf(f string, a ...any) { log.Printf("error: "+f, a...) }
func (tb) Cleanup(func())            {}
func (tb) Name() string              { return "tailnet" }

func main() {
	ip := flag.String("ip", "127.0.0.1", "address for control, DERP and STUN")
	port := flag.String("port", "9911", "control port")
	authKey := flag.String("authkey", "test-auth-key", "auth key nodes must present")
	appCaps := flag.String("app-caps", "", "JSON PeerCapMap granted to every peer (global)")
	flag.Parse()
	derpMap := integration.RunDERPAndSTUN(tb{}, log.Printf, *ip)
	ctl := &testcontrol.Server{DERPMap: derpMap, RequireAuthKey: *authKey, AllOnline: true}
	if *appCaps != "" {
		var m tailcfg.PeerCapMap
		if err := json.Unmarshal([]byte(*appCaps), &m); err != nil {
			log.Fatal(err)
		}
		ctl.SetGlobalAppCaps(m)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(*ip, *port))
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("control on http://%s", ln.Addr())
	log.Fatal(http.Serve(ln, ctl))
}
