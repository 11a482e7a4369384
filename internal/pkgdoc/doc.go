// Package pkgdoc only holds the test that every package has a doc comment.
package pkgdoc
