// A control server for tests: tailscale's own testcontrol plus its DERP/STUN, on one address.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
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
	mux := http.NewServeMux()
	mux.Handle("/", ctl)
	mux.HandleFunc("/ktp/grants", func(w http.ResponseWriter, r *http.Request) { grant(ctl, w, r) })
	log.Printf("control on http://%s", ln.Addr())
	log.Fatal(http.Serve(ln, mux))
}

// grantRequest is what POST /ktp/grants takes: application capabilities granted to peers
// (by host name) towards one node, as a tailnet policy file's grants would give them:
//
//	{"dst": "proxy", "grants": [{"src": "alice", "app": {"example.com/cap/x": [{"identity": "r"}]}}]}
type grantRequest struct {
	Dst    string `json:"dst"`
	Grants []struct {
		Src string             `json:"src"`
		App tailcfg.PeerCapMap `json:"app"`
	} `json:"grants"`
}

// grant sends node dst a full map whose packet filter carries one CapGrant per source, the
// form in which control delivers a policy file's per-source app grants (testcontrol itself
// only grants app capabilities to every peer alike). Call it once every node has joined:
// after a raw map, testcontrol stops sending dst automatic updates.
func grant(ctl *testcontrol.Server, w http.ResponseWriter, r *http.Request) {
	var req grantRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var dst *tailcfg.Node
	for _, n := range ctl.AllNodes() {
		if n.Hostinfo.Hostname() == req.Dst {
			dst = n
		}
	}
	if dst == nil {
		http.Error(w, "no node "+req.Dst, http.StatusNotFound)
		return
	}
	res, err := ctl.MapResponse(&tailcfg.MapRequest{NodeKey: dst.Key})
	if err != nil || res == nil {
		http.Error(w, fmt.Sprint("map response: ", err), http.StatusInternalServerError)
		return
	}
	for _, g := range req.Grants {
		var srcs []string
		for _, p := range res.Peers {
			if p.Hostinfo.Hostname() == g.Src {
				for _, a := range p.Addresses {
					srcs = append(srcs, a.Addr().String())
				}
			}
		}
		if len(srcs) == 0 {
			http.Error(w, "no peer "+g.Src, http.StatusNotFound)
			return
		}
		res.PacketFilter = append(res.PacketFilter, tailcfg.FilterRule{
			SrcIPs:   srcs,
			CapGrant: []tailcfg.CapGrant{{Dsts: res.Node.Addresses, CapMap: g.App}},
		})
	}
	if !ctl.AddRawMapResponse(dst.Key, res) {
		http.Error(w, req.Dst+" is not polling", http.StatusConflict)
		return
	}
	log.Printf("granted %s: %d rules", req.Dst, len(req.Grants))
	fmt.Fprintln(w, "ok")
}
