// Package etcdx is Picket's etcd layer: an embedded etcd member (StartEmbedded), a client
// constructor for embedded or external etcd (NewClient), and a small key-value Store with
// the operations Picket's resources need (create-if-absent, compare-and-swap update,
// paginated listing, watch) plus JSON helpers on top of it.
//
// All Picket keys live under Prefix and are built with Key. Listing always works on whole
// path segments: List and ListAll treat their prefix as a directory and add the trailing
// "/" when it is missing, so listing "/picket/checks/default" never returns keys of the
// namespace "default2".
//
// The embedded member is a single-node cluster today; EmbedConfig already carries the
// membership settings (initial cluster, state, token, peer URLs and TLS) a multi-node
// cluster needs, so clustering can be added without changing this API.
package etcdx
