import json,collections,statistics as st,sys
rows=collections.defaultdict(list)
for l in open(sys.argv[1]):
    d=json.loads(l)
    rows[(d['subscribers'],d['size'],d['server'])].append(d)
for (subs,size,server),ds in sorted(rows.items()):
    cpu=[d['server_cpu_us_per_delivery'] for d in ds]; rate=[d['delivered_per_sec'] for d in ds]; lag=[d['lag_p99_us'] for d in ds]
    print(f"{subs:>6} {size:>5} {server:<12} rate med {st.median(rate)/1000:7.1f}k  cpu/deliv med {st.median(cpu):5.2f} min {min(cpu):5.2f}  lag p99 med {st.median(lag)/1000:.1f} ms   all cpu {[round(c,2) for c in cpu]}")
