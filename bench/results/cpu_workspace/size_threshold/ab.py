"""In-process A/B of layers.WORKSPACE_MIN_BYTES: 0 (every CPU projection in the workspace, as at a97ad91) vs 1 MiB."""
import torch, time, statistics, fastrnn, sys
import fastrnn.layers as L
torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
def bench(fn, n):
    fn(); t=time.perf_counter()
    for _ in range(n): fn()
    return (time.perf_counter()-t)/n*1e6
for (T,B,H,I) in eval(sys.argv[1]):
    m = fastrnn.LSTM(I,H); ref = torch.nn.LSTM(I,H); ref.load_state_dict(m.state_dict())
    x = torch.randn(T,B,I, requires_grad=True); h0=torch.zeros(1,B,H); c0=torch.zeros(1,B,H)
    def fb(mod):
        y,_=mod(x,(h0,c0)); y.sum().backward()
    def f(mod):
        with torch.no_grad(): mod(x,(h0,c0))
    n = max(5, int(20000/ (T*B*H/50+50)))
    for name, fn in (("fwd+bwd", fb), ("nograd fwd", f)):
        res={"all":[], "threshold":[], "torch":[]}
        for r in range(9):
            L.WORKSPACE_MIN_BYTES = 0; res["all"].append(bench(lambda: fn(m), n))
            L.WORKSPACE_MIN_BYTES = 1 << 20; res["threshold"].append(bench(lambda: fn(m), n))
            res["torch"].append(bench(lambda: fn(ref), n))
        a,b,c = (statistics.median(res[k]) for k in ("all","threshold","torch"))
        print(f"T={T} B={B} H={H} I={I} {name}: workspace always {a:.0f} us, from 1 MiB {b:.0f} us ({a/b:.2f}x); torch {c:.0f} us: torch/fastrnn {c/a:.2f} -> {c/b:.2f}")
