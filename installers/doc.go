// Package installers holds the service definitions and packaging files for
// every platform; its tests check them.
//
//   - linux: the systemd unit, the nfpm configuration and the package scripts
//     of the deb and rpm packages.
//   - windows: the WiX source of the MSI (built with wixl) and build-msi.sh.
//   - darwin: the LaunchDaemon, the pkg scripts and distribution,
//     build-pkg.sh, uninstall.sh and a sample MDM configuration profile.
package installers
