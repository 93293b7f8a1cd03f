package virtapi

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
)

// Where the APIService points: the Service virt-api has in OpenShift
// Virtualization, here of type ExternalName "localhost" (the aggregator,
// without --enable-aggregator-routing, dials <externalName>:<APIService
// port>).
const (
	ServiceNamespace = "openshift-cnv"
	ServiceName      = "virt-api"
	// APIServiceName is the APIService of subresources.kubevirt.io/v1.
	APIServiceName = Version + "." + Group
)

var (
	gvrNamespace  = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	gvrService    = schema.GroupVersionResource{Version: "v1", Resource: "services"}
	gvrAPIService = schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}
)

type registration struct {
	dc dynamic.Interface
}

// Register makes the cluster of cfg route subresources.kubevirt.io/v1 to
// this server (Namespace, ExternalName Service, APIService) and waits until
// the aggregator reports the APIService Available.
func (s *Server) Register(ctx context.Context, cfg *rest.Config) error {
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("virtapi register: client: %w", err)
	}
	s.regMu.Lock()
	s.reg = &registration{dc: dc} // before creating, so Unregister removes a partial registration
	s.regMu.Unlock()
	for _, o := range []struct {
		gvr schema.GroupVersionResource
		obj *unstructured.Unstructured
	}{
		{gvrNamespace, namespaceObject()},
		{gvrService, serviceObject()},
		{gvrAPIService, apiServiceObject(s.Port())},
	} {
		if err := apply(ctx, dc, o.gvr, o.obj); err != nil {
			return fmt.Errorf("virtapi register: %w", err)
		}
	}
	if err := waitAvailable(ctx, dc); err != nil {
		return fmt.Errorf("virtapi register: %w", err)
	}
	s.log.Info("simulated virt-api registered", zap.String("apiservice", APIServiceName), zap.Int("port", s.Port()))
	return nil
}

// Unregister deletes the APIService and Service Register made, so the
// cluster's discovery does not report an unavailable API after the server
// stops.
func (s *Server) Unregister(ctx context.Context) error {
	s.regMu.Lock()
	reg := s.reg
	s.reg = nil
	s.regMu.Unlock()
	if reg == nil {
		return nil
	}
	var errs []error
	if err := reg.dc.Resource(gvrAPIService).Delete(ctx, APIServiceName, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, fmt.Errorf("delete APIService: %w", err))
	}
	if err := reg.dc.Resource(gvrService).Namespace(ServiceNamespace).Delete(ctx, ServiceName, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, fmt.Errorf("delete Service: %w", err))
	}
	return errors.Join(errs...)
}

func namespaceObject() *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ServiceNamespace},
	}}
}

func serviceObject() *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Service",
		"metadata": map[string]any{"name": ServiceName, "namespace": ServiceNamespace},
		"spec":     map[string]any{"type": "ExternalName", "externalName": "localhost"},
	}}
}

func apiServiceObject(port int) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
		"metadata": map[string]any{"name": APIServiceName},
		"spec": map[string]any{
			"group": Group, "version": Version,
			"service":               map[string]any{"namespace": ServiceNamespace, "name": ServiceName, "port": int64(port)},
			"insecureSkipTLSVerify": true,
			"groupPriorityMinimum":  int64(1000),
			"versionPriority":       int64(15),
		},
	}}
}

// apply creates obj, or replaces the spec of the existing one.
func apply(ctx context.Context, dc dynamic.Interface, gvr schema.GroupVersionResource, obj *unstructured.Unstructured) error {
	ri := resource(dc, gvr, obj.GetNamespace())
	_, err := ri.Create(ctx, obj, metav1.CreateOptions{})
	if err == nil || !apierrors.IsAlreadyExists(err) {
		if err != nil {
			return fmt.Errorf("create %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
		return nil
	}
	if obj.Object["spec"] == nil {
		return nil
	}
	cur, err := ri.Get(ctx, obj.GetName(), metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get %s %s: %w", obj.GetKind(), obj.GetName(), err)
	}
	cur.Object["spec"] = obj.Object["spec"]
	if _, err := ri.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update %s %s: %w", obj.GetKind(), obj.GetName(), err)
	}
	return nil
}

func resource(dc dynamic.Interface, gvr schema.GroupVersionResource, ns string) dynamic.ResourceInterface {
	if ns == "" {
		return dc.Resource(gvr)
	}
	return dc.Resource(gvr).Namespace(ns)
}

// waitAvailable polls the APIService's Available condition (the aggregator
// checks /apis/<group>/<version> through the Service).
func waitAvailable(ctx context.Context, dc dynamic.Interface) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	last := "no status yet"
	for {
		ok, msg, err := available(ctx, dc)
		if err != nil {
			last = err.Error()
		} else if ok {
			return nil
		} else {
			last = msg
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("APIService %s not Available: %s: %w", APIServiceName, last, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func available(ctx context.Context, dc dynamic.Interface) (bool, string, error) {
	u, err := dc.Resource(gvrAPIService).Get(ctx, APIServiceName, metav1.GetOptions{})
	if err != nil {
		return false, "", fmt.Errorf("get APIService: %w", err)
	}
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Available" {
			return m["status"] == "True", fmt.Sprintf("%v: %v", m["reason"], m["message"]), nil
		}
	}
	return false, "no Available condition yet", nil
}
