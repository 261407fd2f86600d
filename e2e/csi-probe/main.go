// csi-probe is the smallest CSI node plugin that proves what strongroom's
// csi-node relies on in the e2e cluster: it registers with the kubelet through
// /var/lib/kubelet/plugins_registry (no node-driver-registrar image can be
// pulled here), and on NodePublishVolume mounts a tmpfs at the target path and
// writes the ServiceAccount tokens the kubelet passed for the CSIDriver's
// tokenRequests into it, so a test can read them from inside the pod.
package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"net"
	"os"
	"path/filepath"
	"syscall"

	csi "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	registration "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

const tokensKey = "csi.storage.k8s.io/serviceAccount.tokens"

type probe struct {
	csi.UnimplementedIdentityServer
	csi.UnimplementedNodeServer
	driver, nodeID, kubeletEndpoint string
}

// Registration service, called by the kubelet's plugin watcher.

func (p *probe) GetInfo(context.Context, *registration.InfoRequest) (*registration.PluginInfo, error) {
	return &registration.PluginInfo{
		Type:              registration.CSIPlugin,
		Name:              p.driver,
		Endpoint:          p.kubeletEndpoint,
		SupportedVersions: []string{"1.0.0"},
	}, nil
}

func (p *probe) NotifyRegistrationStatus(_ context.Context, s *registration.RegistrationStatus) (*registration.RegistrationStatusResponse, error) {
	log.Printf("registration status: registered=%v error=%q", s.PluginRegistered, s.Error)
	return &registration.RegistrationStatusResponse{}, nil
}

// CSI Identity and Node services.

func (p *probe) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	return &csi.GetPluginInfoResponse{Name: p.driver, VendorVersion: "0.0.0"}, nil
}

func (p *probe) GetPluginCapabilities(context.Context, *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	return &csi.GetPluginCapabilitiesResponse{}, nil
}

func (p *probe) Probe(context.Context, *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	return &csi.ProbeResponse{}, nil
}

func (p *probe) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	return &csi.NodeGetInfoResponse{NodeId: p.nodeID}, nil
}

func (p *probe) NodeGetCapabilities(context.Context, *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	return &csi.NodeGetCapabilitiesResponse{}, nil
}

func (p *probe) NodePublishVolume(_ context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	target := req.GetTargetPath()
	if req.GetVolumeId() == "" || target == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id and target path are required")
	}
	if err := os.MkdirAll(target, 0o750); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if !isMountPoint(target) {
		if err := syscall.Mount("tmpfs", target, "tmpfs", 0, "size=1m,mode=0755"); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
	}
	// The tokens are written for the test to check, never logged.
	tokens := req.GetVolumeContext()[tokensKey]
	if err := os.WriteFile(filepath.Join(target, "tokens.json"), []byte(tokens), 0o644); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	log.Printf("published %s for pod %s", req.GetVolumeId(), req.GetVolumeContext()["csi.storage.k8s.io/pod.name"])
	return &csi.NodePublishVolumeResponse{}, nil
}

func (p *probe) NodeUnpublishVolume(_ context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	target := req.GetTargetPath()
	if target == "" {
		return nil, status.Error(codes.InvalidArgument, "target path is required")
	}
	if isMountPoint(target) {
		if err := syscall.Unmount(target, 0); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
	}
	if err := os.RemoveAll(target); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	log.Printf("unpublished %s", req.GetVolumeId())
	return &csi.NodeUnpublishVolumeResponse{}, nil
}

func isMountPoint(path string) bool {
	var self, parent syscall.Stat_t
	if syscall.Stat(path, &self) != nil || syscall.Stat(filepath.Dir(path), &parent) != nil {
		return false
	}
	return self.Dev != parent.Dev
}

func listen(socket string) net.Listener {
	if err := os.MkdirAll(filepath.Dir(socket), 0o750); err != nil {
		log.Fatal(err)
	}
	if err := os.Remove(socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		log.Fatal(err)
	}
	listener, err := net.Listen("unix", socket)
	if err != nil {
		log.Fatal(err)
	}
	return listener
}

func main() {
	p := &probe{}
	csiSocket := flag.String("csi-socket", "/csi/csi.sock", "where this plugin serves CSI")
	registrationSocket := flag.String("registration-socket", "", "socket in the kubelet's plugins_registry")
	flag.StringVar(&p.driver, "driver", "probe.csi.strongroom.io", "CSI driver name")
	flag.StringVar(&p.nodeID, "node-id", os.Getenv("NODE_NAME"), "node id reported to the kubelet")
	flag.StringVar(&p.kubeletEndpoint, "kubelet-endpoint", "", "the CSI socket's path as the kubelet sees it")
	flag.Parse()

	csiServer := grpc.NewServer()
	csi.RegisterIdentityServer(csiServer, p)
	csi.RegisterNodeServer(csiServer, p)
	go func() { log.Fatal(csiServer.Serve(listen(*csiSocket))) }()

	registrationServer := grpc.NewServer()
	registration.RegisterRegistrationServer(registrationServer, p)
	log.Printf("serving %s; registering through %s", p.driver, *registrationSocket)
	log.Fatal(registrationServer.Serve(listen(*registrationSocket)))
}
