// Command probe is the test workload of the real node: it serves TCP/UDP ports, connects to a
// host:port, resolves names, tries to write a path, reports its own process hardening and calls
// the API server with a ServiceAccount token. Every command except serve/sleep prints one JSON
// object and exits 0 when the attempt succeeded, 1 when it failed, 2 on a usage error, so a test
// can tell "blocked" from "broken probe".
package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const banner = "palisade-probe"

const saDir = "/var/run/secrets/kubernetes.io/serviceaccount"

type result map[string]any

func emit(ok bool, r result) {
	r["ok"] = ok
	out, _ := json.Marshal(r)
	fmt.Println(string(out))
	if ok {
		os.Exit(0)
	}
	os.Exit(1)
}

func usage(msg string) {
	fmt.Fprintln(os.Stderr, "probe:", msg)
	fmt.Fprintln(os.Stderr, `usage: probe serve [--tcp PORTS] [--udp PORTS]
       probe connect [--udp] [--timeout DURATION] HOST:PORT
       probe matrix [--timeout DURATION] HOST:PORT|udp:HOST:PORT...
       probe resolve [--timeout DURATION] NAME
       probe write PATH
       probe status
       probe api [--method METHOD] [--token FILE] [--server URL] [--timeout DURATION] PATH
       probe webhook [--port PORT] --dns NAME[,NAME...]
       probe sleep`)
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage("missing command")
	}
	cmd, args := os.Args[1], os.Args[2:]
	switch cmd {
	case "serve":
		serve(args)
	case "connect":
		connect(args)
	case "matrix":
		matrix(args)
	case "resolve":
		resolve(args)
	case "write":
		write(args)
	case "status":
		status()
	case "api":
		api(args)
	case "webhook":
		webhook(args)
	case "sleep":
		waitForSignal()
	default:
		usage("unknown command " + strconv.Quote(cmd))
	}
}

func waitForSignal() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	<-sigs
}

func ports(list string) []int {
	var out []int
	for _, p := range strings.Split(list, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			usage("bad port " + strconv.Quote(p))
		}
		out = append(out, n)
	}
	return out
}

// serve answers every TCP connection and UDP datagram with "palisade-probe HOSTNAME PORT".
func serve(args []string) {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	tcp := fs.String("tcp", "", "comma-separated TCP ports")
	udp := fs.String("udp", "", "comma-separated UDP ports")
	_ = fs.Parse(args)
	host, _ := os.Hostname()
	for _, p := range ports(*tcp) {
		ln, err := net.Listen("tcp", ":"+strconv.Itoa(p))
		if err != nil {
			fmt.Fprintln(os.Stderr, "probe: listen tcp:", err)
			os.Exit(1)
		}
		go func(ln net.Listener, port int) {
			for {
				c, err := ln.Accept()
				if err != nil {
					continue
				}
				go func(c net.Conn) {
					defer c.Close()
					_ = c.SetDeadline(time.Now().Add(5 * time.Second))
					fmt.Fprintf(c, "%s %s %d\n", banner, host, port)
				}(c)
			}
		}(ln, p)
	}
	for _, p := range ports(*udp) {
		pc, err := net.ListenPacket("udp", ":"+strconv.Itoa(p))
		if err != nil {
			fmt.Fprintln(os.Stderr, "probe: listen udp:", err)
			os.Exit(1)
		}
		go func(pc net.PacketConn, port int) {
			buf := make([]byte, 512)
			for {
				_, addr, err := pc.ReadFrom(buf)
				if err != nil {
					continue
				}
				_, _ = pc.WriteTo([]byte(fmt.Sprintf("%s %s %d\n", banner, host, port)), addr)
			}
		}(pc, p)
	}
	fmt.Printf("serving tcp=%q udp=%q as %s\n", *tcp, *udp, host)
	waitForSignal()
}

// connect succeeds when the TCP handshake completes (and reports the banner if the peer is a
// probe), or, with --udp, when a probe answers the datagram.
// attempt connects to target once: for TCP a completed handshake, for UDP an answer from
// `probe serve` (a datagram alone proves nothing). The banner is what the server sent, if any.
func attempt(target string, udp bool, timeout time.Duration) (string, error) {
	network := "tcp"
	if udp {
		network = "udp"
	}
	c, err := net.DialTimeout(network, target, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if !udp {
		_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		line, _ := bufio.NewReader(c).ReadString('\n')
		if strings.HasPrefix(line, banner) {
			return strings.TrimSpace(line), nil
		}
		return "", nil
	}
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(line), nil
}

func connect(args []string) {
	fs := flag.NewFlagSet("connect", flag.ExitOnError)
	udp := fs.Bool("udp", false, "UDP instead of TCP")
	timeout := fs.Duration("timeout", 2*time.Second, "give up after")
	_ = fs.Parse(args)
	if fs.NArg() != 1 {
		usage("connect needs HOST:PORT")
	}
	target := fs.Arg(0)
	r := result{"target": target, "protocol": "tcp"}
	if *udp {
		r["protocol"] = "udp"
	}
	start := time.Now()
	got, err := attempt(target, *udp, *timeout)
	r["millis"] = time.Since(start).Milliseconds()
	if err != nil {
		r["error"] = err.Error()
		emit(false, r)
	}
	if got != "" {
		r["banner"] = got
	}
	emit(true, r)
}

// matrix tries every target at once (HOST:PORT for TCP, udp:HOST:PORT) and reports each;
// it succeeds when every attempt was made, whatever the outcomes.
func matrix(args []string) {
	fs := flag.NewFlagSet("matrix", flag.ExitOnError)
	timeout := fs.Duration("timeout", time.Second, "give up on one target after")
	_ = fs.Parse(args)
	if fs.NArg() == 0 {
		usage("matrix needs targets")
	}
	type outcome struct {
		target string
		ok     bool
	}
	results := make(chan outcome)
	for _, t := range fs.Args() {
		go func(t string) {
			addr, udp := strings.CutPrefix(t, "udp:")
			_, err := attempt(addr, udp, *timeout)
			results <- outcome{t, err == nil}
		}(t)
	}
	reached := map[string]bool{}
	for range fs.Args() {
		o := <-results
		reached[o.target] = o.ok
	}
	emit(true, result{"reached": reached})
}

func resolve(args []string) {
	fs := flag.NewFlagSet("resolve", flag.ExitOnError)
	timeout := fs.Duration("timeout", 3*time.Second, "give up after")
	_ = fs.Parse(args)
	if fs.NArg() != 1 {
		usage("resolve needs NAME")
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupHost(ctx, fs.Arg(0))
	r := result{"name": fs.Arg(0)}
	if err != nil {
		r["error"] = err.Error()
		emit(false, r)
	}
	r["addresses"] = addrs
	emit(true, r)
}

func write(args []string) {
	if len(args) != 1 {
		usage("write needs PATH")
	}
	r := result{"path": args[0]}
	if err := os.WriteFile(args[0], []byte("written by palisade-probe\n"), 0o600); err != nil {
		r["error"] = err.Error()
		emit(false, r)
	}
	emit(true, r)
}

// status reports what the kernel enforces on this process (the fields of /proc/self/status
// that securityContext settings turn into) and its ids.
func status() {
	r := result{"uid": os.Getuid(), "gid": os.Getgid()}
	groups, _ := os.Getgroups()
	r["groups"] = groups
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		r["error"] = err.Error()
		emit(false, r)
	}
	for _, line := range strings.Split(string(data), "\n") {
		key, value, found := strings.Cut(line, ":")
		if !found {
			continue
		}
		switch key {
		case "NoNewPrivs", "Seccomp", "CapEff", "CapBnd", "CapPrm":
			r[key] = strings.TrimSpace(value)
		}
	}
	host, _ := os.Hostname()
	r["hostname"] = host
	emit(true, r)
}

// api calls the API server as the pod's ServiceAccount (or with a token file taken elsewhere:
// the stolen-token attack) and reports the HTTP status; ok means 2xx.
func api(args []string) {
	fs := flag.NewFlagSet("api", flag.ExitOnError)
	method := fs.String("method", "GET", "HTTP method")
	tokenFile := fs.String("token", saDir+"/token", "bearer token file")
	server := fs.String("server", "", "API server URL (default from KUBERNETES_SERVICE_HOST/PORT)")
	body := fs.String("body", "", "request body (JSON)")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after")
	_ = fs.Parse(args)
	if fs.NArg() != 1 {
		usage("api needs PATH")
	}
	r := result{"method": *method, "path": fs.Arg(0)}
	url := *server
	if url == "" {
		host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
		if host == "" || port == "" {
			r["error"] = "KUBERNETES_SERVICE_HOST/PORT not set"
			emit(false, r)
		}
		url = "https://" + net.JoinHostPort(host, port)
	}
	token, err := os.ReadFile(*tokenFile)
	if err != nil {
		r["error"] = "token: " + err.Error()
		emit(false, r)
	}
	pool := x509.NewCertPool()
	if ca, err := os.ReadFile(saDir + "/ca.crt"); err == nil {
		pool.AppendCertsFromPEM(ca)
	}
	client := &http.Client{
		Timeout:   *timeout,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	var reqBody io.Reader
	if *body != "" {
		reqBody = strings.NewReader(*body)
	}
	req, err := http.NewRequest(*method, url+fs.Arg(0), reqBody)
	if err != nil {
		r["error"] = err.Error()
		emit(false, r)
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		r["error"] = err.Error()
		emit(false, r)
	}
	defer resp.Body.Close()
	r["status"] = resp.StatusCode
	emit(resp.StatusCode >= 200 && resp.StatusCode < 300, r)
}

// webhook serves admission reviews over TLS with a certificate it makes for itself (printed
// once as {"caBundle": ...} for the webhook configuration): it allows every object except those
// named "deny-*", so a test can tell that the API server really consulted it.
func webhook(args []string) {
	fs := flag.NewFlagSet("webhook", flag.ExitOnError)
	port := fs.Int("port", 8443, "TCP port")
	dns := fs.String("dns", "", "comma-separated DNS names for the certificate")
	_ = fs.Parse(args)
	if *dns == "" {
		usage("webhook needs --dns")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		emit(false, result{"error": err.Error()})
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: strings.Split(*dns, ",")[0]},
		DNSNames:              strings.Split(*dns, ","),
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		emit(false, result{"error": err.Error()})
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	line, _ := json.Marshal(result{"caBundle": base64.StdEncoding.EncodeToString(certPEM)})
	fmt.Println(string(line))
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		var review struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Request    struct {
				UID    string `json:"uid"`
				Object struct {
					Metadata struct {
						Name string `json:"name"`
					} `json:"metadata"`
				} `json:"object"`
			} `json:"request"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&review); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		name := review.Request.Object.Metadata.Name
		allowed := !strings.HasPrefix(name, "deny-")
		resp := map[string]any{
			"apiVersion": "admission.k8s.io/v1",
			"kind":       "AdmissionReview",
			"response": map[string]any{
				"uid":     review.Request.UID,
				"allowed": allowed,
				"status":  map[string]any{"message": "palisade-probe webhook: " + name},
			},
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(resp)
	})
	server := &http.Server{
		Addr:              ":" + strconv.Itoa(*port),
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{{
			Certificate: [][]byte{der},
			PrivateKey:  key,
		}}},
	}
	if err := server.ListenAndServeTLS("", ""); err != nil {
		emit(false, result{"error": err.Error()})
	}
}
