// The start-up floor of a Swift program on this machine, for bench/run-vs-nq.sh: built like
// clawflow's release binary (optimised, Swift runtime linked statically), it prints one line.
print("hello")
