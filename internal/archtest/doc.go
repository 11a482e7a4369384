// Package archtest only holds the test of the design's dependency rules
// (README: Architecture): the server never
// imports the agent, the collectors or the platform layer, and its binary
// links none of the OS libraries they use; collectors never import the
// agent or the server; the platform layer imports neither, nor installers
// (it is given the packaged service files); the evidence contract and the
// wire protocol import nothing else of this module. Every broken rule is
// printed as "A imports B".
package archtest
