// Package bench is AEM's benchmark suite: Go benchmarks of the aembench
// scenarios on AEM and on every peer (bench/peers), for benchstat.
//
//	go test ./bench/... -run '^$' -bench . -count=10 > new.txt
//	scripts/benchcmp.sh main HEAD   # two revisions, compared
//
// AEM_BENCH_BACKEND=embedded|kernel picks AEM's backend (default auto).
package bench
