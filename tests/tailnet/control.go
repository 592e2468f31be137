// A control server for tests: tailscale's own testcontrol plus a DERP and a STUN server, on one
// address. (Not tstest/integration's helper for the same: that package would double the build.)
package main

import (
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"tailscale.com/derp/derpserver"
	"tailscale.com/net/stun/stuntest"
	"tailscale.com/tailcfg"
	"tailscale.com/tstest/integration/testcontrol"
	"tailscale.com/types/key"
	"tailscale.com/types/nettype"
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
	derpMap := derpAndSTUN(*ip)
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

// derpAndSTUN serves a DERP server (HTTPS, the self-signed certificate of httptest, which the
// map marks InsecureForTests) and a STUN server on ip, and returns the DERP map naming them.
func derpAndSTUN(ip string) *tailcfg.DERPMap {
	d := derpserver.New(key.NewNode(), log.Printf)
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		log.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(derpserver.Handler(d))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Config.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	srv.StartTLS()
	stunAddr, _ := stuntest.ServeWithPacketListener(tb{}, nettype.Std{})
	log.Printf("DERP on %s, STUN on %s", ln.Addr(), stunAddr)
	return &tailcfg.DERPMap{Regions: map[int]*tailcfg.DERPRegion{1: {
		RegionID:   1,
		RegionCode: "test",
		Nodes: []*tailcfg.DERPNode{{
			Name:             "t1",
			RegionID:         1,
			HostName:         ip,
			IPv4:             ip,
			IPv6:             "none",
			STUNPort:         stunAddr.Port,
			DERPPort:         ln.Addr().(*net.TCPAddr).Port,
			InsecureForTests: true,
			STUNTestIP:       ip,
		}},
	}}}
}
