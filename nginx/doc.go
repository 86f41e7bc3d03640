// Package nginx holds no code. Its tests run nginx rendered from
// nginx.conf.template in front of stand-in API replicas (package
// nginxtest) and check what clients get when a replica fails: which
// requests are tried again on the other replica, which answers are passed
// on as they are, and nginx's own errors.
package nginx
