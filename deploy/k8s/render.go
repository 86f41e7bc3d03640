package k8s

import (
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/resmap"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// Build runs kustomize, as `kubectl kustomize` does, on the kustomization
// in dir (an overlay).
func Build(dir string) (resmap.ResMap, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	return k.Run(filesys.MakeFsOnDisk(), dir)
}
