/// The dashboard at `/`: one page with its script and style inline, nothing fetched from elsewhere
/// (a fleet may have no internet). It polls `/api/v1/fleet` and `/api/v1/rounds` every 2 s.
enum Dashboard {
    static let html = #"""
<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>FedPi fleet</title>
<style>
:root{--bg:#f6f7f9;--card:#fff;--ink:#1d2330;--mute:#6b7280;--ok:#15803d;--bad:#b91c1c;--busy:#b45309;--acc:#2563eb;--loss:#db2777}
*{box-sizing:border-box}body{margin:0;font:14px/1.4 system-ui,sans-serif;background:var(--bg);color:var(--ink)}
header{display:flex;flex-wrap:wrap;gap:12px;align-items:center;padding:10px 16px;background:#1d2330;color:#fff}
header h1{font-size:18px;margin:0 12px 0 0}header .info{color:#cbd5e1}
button{font:inherit;padding:5px 12px;border:1px solid #94a3b8;border-radius:6px;background:#fff;cursor:pointer}
button:disabled{opacity:.5;cursor:default}input[type=number]{width:60px;font:inherit;padding:4px}
main{display:grid;grid-template-columns:repeat(auto-fit,minmax(430px,1fr));gap:14px;padding:14px}
section{background:var(--card);border-radius:8px;padding:12px 14px;box-shadow:0 1px 2px #0002}
section.wide{grid-column:1/-1}h2{font-size:15px;margin:0 0 8px}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:4px 6px;border-bottom:1px solid #e5e7eb;vertical-align:top}
th{font-weight:600;color:var(--mute);font-size:12px}
.state{font-weight:600}.online{color:var(--ok)}.busy{color:var(--busy)}.offline,.unknown{color:var(--bad)}
.bar{height:10px;background:#e5e7eb;border-radius:5px;overflow:hidden;min-width:80px}.bar i{display:block;height:100%;background:var(--acc)}
.mute{color:var(--mute);font-size:12px}.err{color:var(--bad)}svg text{font-size:11px;fill:var(--mute)}
#draw{border:1px solid #94a3b8;background:#000;touch-action:none;cursor:crosshair;width:224px;height:224px}
.probs div{display:flex;align-items:center;gap:6px}.probs span{width:90px;text-align:right}.probs b{height:10px;background:var(--acc)}
#prediction{font-size:20px;font-weight:600;margin:6px 0}
</style></head><body>
<header><h1>FedPi fleet</h1><span class="info" id="summary">connecting…</span><span class="info">phase: <b id="phase">?</b></span>
<span style="flex:1"></span>
<button id="pause">Pause</button><button id="resume">Resume</button><button id="stop" title="finish the round in progress, then stop">Stop after this round</button>
<input type="number" id="rounds-n" min="1" max="10000" value="5"><button id="add-rounds">Add rounds</button></header>
<main>
<section class="wide"><h2>Nodes</h2><table id="nodes"><thead><tr><th>Node</th><th>State</th><th>Last seen</th><th>CPU °C</th>
<th>Throttling</th><th>Memory</th><th>Load</th><th>Task</th><th>Samples</th></tr></thead><tbody></tbody></table>
<div id="round" class="mute"></div></section>
<section><h2>Accuracy and loss per round</h2><svg id="chart" width="100%" height="220" viewBox="0 0 460 220"></svg>
<div class="mute"><span style="color:var(--acc)">●</span> test accuracy (left axis) <span style="color:var(--loss)">●</span> test loss (right axis)</div></section>
<section><h2>Bytes per round</h2><svg id="bytes" width="100%" height="220" viewBox="0 0 460 220"></svg>
<div class="mute"><span style="color:#64748b">■</span> down (models sent) <span style="color:#0d9488">■</span> up (updates received)</div></section>
<section><h2>Per class</h2><div id="classes" class="mute">no evaluation with per-class counts yet</div></section>
<section><h2>Failures</h2><div id="failures" class="mute">none</div></section>
<section><h2>Predict with the current model</h2>
<div style="display:flex;gap:16px;flex-wrap:wrap"><div><canvas id="draw" width="280" height="280"></canvas><br>
<button id="clear">Clear</button> <button id="predict-btn">Predict drawing</button><br>
<label class="mute">or an image: <input type="file" id="upload" accept="image/*"></label></div>
<div><div id="prediction">draw or upload</div><div class="probs" id="probs"></div></div></div></section>
</main>
<script>
"use strict";
const $=id=>document.getElementById(id);
let names=[...Array(10).keys()].map(String);
const esc=s=>String(s??"").replace(/[&<>"]/g,c=>({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]));
function ago(iso){if(!iso)return"never";const s=Math.max(0,(Date.now()-Date.parse(iso))/1000);
 return s<90?Math.round(s)+" s ago":s<5400?Math.round(s/60)+" min ago":Math.round(s/3600)+" h ago"}
const mib=b=>b==null?"–":(b/1048576).toFixed(0)+" MiB";
const fmtBytes=b=>b>=1e9?(b/1e9).toFixed(2)+" GB":b>=1e6?(b/1e6).toFixed(1)+" MB":b>=1e3?(b/1e3).toFixed(1)+" kB":b+" B";
async function api(path,opts){const r=await fetch(path,opts);const t=await r.json().catch(()=>({}));if(!r.ok)throw new Error(t.error||r.status);return t}
function renderFleet(f){
 names=f.aggregator.class_names||names;const c=f.control;
 $("summary").textContent=`${f.aggregator.model} · ${f.aggregator.strategy}${f.aggregator.model_ema>0?` (model_ema ${f.aggregator.model_ema})`:""} · ${f.aggregator.encoding} · round ${c.completed_rounds} of ${c.target_rounds}`;
 $("phase").textContent=c.paused&&c.phase==="running"?"pausing after this round":c.phase;
 $("pause").disabled=c.paused;$("resume").disabled=!c.paused;
 const rows=f.nodes.map(n=>{const h=n.health||{},t=n.task;const pct=t&&t.total?Math.round(100*t.samples/t.total):0;
  const up=n.state==="online"||n.state==="busy";
  return `<tr data-node="${esc(n.name)}"><td><b>${esc(n.name)}</b><div class="mute">${esc(n.url)}</div></td>
  <td><span class="state ${up?"online":"offline"}">${up?"online":"offline"}</span><div class="mute">since ${ago(n.since)}</div>${n.last_error?`<div class="err mute">${esc(n.last_error)}</div>`:""}</td>
  <td>${ago(n.last_seen)}</td><td>${h.temperature_celsius!=null?h.temperature_celsius.toFixed(1):"–"}</td>
  <td>${h.throttled&&h.throttled.length?`<span class="err">${esc(h.throttled.join(", "))}</span>`:h.throttled?"none":"–"}</td>
  <td>${mib(h.resident_bytes)}<div class="mute">${mib(h.memory_available_bytes)} free</div></td><td>${h.load1!=null?h.load1.toFixed(2):"–"}</td>
  <td>${t?`${esc(t.state)}${t.round!=null?" r"+t.round:""}<div class="bar" title="${pct}%"><i style="width:${pct}%"></i></div>`:"–"}</td>
  <td>${n.samples??"–"}</td></tr>`}).join("");
 $("nodes").tBodies[0].innerHTML=rows;
 const r=f.round;$("round").innerHTML=r?`Round ${r.round} (attempt ${r.attempt}, started ${ago(r.started_at)}): `+
  r.nodes.map(x=>`${esc(x.node)} <b>${esc(x.status)}</b>${x.reason?" ("+esc(x.reason)+")":""}`).join(" · "):"No round in progress.";
}
function axis(svg,x0,x1,y0,y1){return `<line x1="${x0}" y1="${y1}" x2="${x1}" y2="${y1}" stroke="#cbd5e1"/><line x1="${x0}" y1="${y0}" x2="${x0}" y2="${y1}" stroke="#cbd5e1"/>`}
function renderRounds(rows){
 const done=rows.filter(r=>r.completed&&r.accuracy!=null);const svg=$("chart");
 const W=460,H=220,L=40,R=420,T=10,B=190;
 let s=axis(svg,L,R,T,B);
 if(done.length){const rmax=Math.max(1,...done.map(r=>r.round)),lmax=Math.max(.1,...done.map(r=>r.loss||0));
  const x=r=>L+(R-L)*r/rmax,ya=a=>B-(B-T)*a,yl=l=>B-(B-T)*l/lmax;
  for(const a of [0,.25,.5,.75,1])s+=`<text x="4" y="${ya(a)+4}">${a*100}%</text><line x1="${L}" x2="${R}" y1="${ya(a)}" y2="${ya(a)}" stroke="#f1f5f9"/>`;
  s+=`<text x="${R+4}" y="${T+8}">${lmax.toFixed(2)}</text><text x="${R+4}" y="${B}">0</text><text x="${L}" y="${H-6}">round 0</text><text x="${R-40}" y="${H-6}">round ${rmax}</text>`;
  s+=`<polyline fill="none" stroke="var(--acc)" stroke-width="2" points="${done.map(r=>x(r.round)+","+ya(r.accuracy)).join(" ")}"/>`;
  s+=`<polyline fill="none" stroke="var(--loss)" stroke-width="1.5" stroke-dasharray="4 3" points="${done.map(r=>x(r.round)+","+yl(r.loss||0)).join(" ")}"/>`;
  s+=done.map(r=>`<circle class="point" cx="${x(r.round)}" cy="${ya(r.accuracy)}" r="3" fill="var(--acc)"><title>round ${r.round}: ${(100*r.accuracy).toFixed(2)}%, loss ${(r.loss||0).toFixed(4)}</title></circle>`).join("");
 }
 svg.innerHTML=s;svg.dataset.points=done.length;
 const trained=rows.filter(r=>r.round>0),bs=$("bytes");let b=axis(bs,L,R,T,B);
 if(trained.length){const last=trained.slice(-40),m=Math.max(1,...last.map(r=>Math.max(r.bytes_down,r.bytes_up))),w=(R-L)/last.length;
  b+=`<text x="2" y="${T+8}">${fmtBytes(m)}</text>`;
  last.forEach((r,i)=>{const hd=(B-T)*r.bytes_down/m,hu=(B-T)*r.bytes_up/m,x=L+i*w;
   b+=`<rect x="${x+1}" y="${B-hd}" width="${w/2-1}" height="${hd}" fill="#64748b"><title>round ${r.round}: ${fmtBytes(r.bytes_down)} down</title></rect>`+
      `<rect x="${x+w/2}" y="${B-hu}" width="${w/2-1}" height="${hu}" fill="#0d9488"><title>round ${r.round}: ${fmtBytes(r.bytes_up)} up</title></rect>`});
  b+=`<text x="${L}" y="${H-6}">round ${last[0].round}</text><text x="${R-50}" y="${H-6}">round ${last[last.length-1].round}</text>`}
 bs.innerHTML=b;
 // the newest evaluation's confusion matrix: recall, precision, support and the most frequent mistake per class
 const ev=[...done].reverse().find(r=>r.confusion),pc=$("classes");
 if(ev){const pct=v=>v==null?"–":(100*v).toFixed(1)+"%",nm=i=>esc(names[i]??i);pc.dataset.round=ev.round;
  pc.innerHTML=`round ${ev.round}<table><tr><th>Class</th><th>Recall</th><th>Precision</th><th>Test images</th><th>Most often taken for</th></tr>`+
   ev.confusion.map((row,i)=>{let j=-1;row.forEach((v,k)=>{if(k!==i&&v>0&&(j<0||v>row[j]))j=k});
    return `<tr><td>${nm(i)}</td><td>${pct(ev.recall[i])}</td><td>${pct(ev.precision[i])}</td><td>${row.reduce((a,b)=>a+b,0)}</td><td>${j<0?"–":nm(j)+" ("+row[j]+")"}</td></tr>`}).join("")+"</table>"}
 const fails=rows.flatMap(r=>r.failures.map(f=>({...f,round:r.round,attempt:r.attempt}))).slice(-30).reverse();
 $("failures").innerHTML=fails.length?"<table><tr><th>Round</th><th>Node</th><th>Reason</th></tr>"+
  fails.map(f=>`<tr><td>${f.round}${f.attempt>1?"/"+f.attempt:""}</td><td>${esc(f.node)}</td><td>${esc(f.reason)}</td></tr>`).join("")+"</table>":"none";
}
async function refresh(){
 try{renderFleet(await api("/api/v1/fleet"));renderRounds(await api("/api/v1/rounds?limit=500"))}
 catch(e){$("summary").textContent="aggregator unreachable: "+e.message}
}
async function control(body){try{await api("/api/v1/control",{method:"POST",headers:{"content-type":"application/json"},body:JSON.stringify(body)});refresh()}catch(e){alert(e.message)}}
$("pause").onclick=()=>control({action:"pause"});$("resume").onclick=()=>control({action:"resume"});
$("stop").onclick=()=>control({action:"stop"});$("add-rounds").onclick=()=>control({action:"add_rounds",rounds:+$("rounds-n").value});
// drawing: white ink on black, like the MNIST-format data sets
const cv=$("draw"),ctx=cv.getContext("2d");let drawing=false;
function clear(){ctx.fillStyle="#000";ctx.fillRect(0,0,cv.width,cv.height)}clear();
function pos(e){const r=cv.getBoundingClientRect();return[(e.clientX-r.left)*cv.width/r.width,(e.clientY-r.top)*cv.height/r.height]}
cv.addEventListener("pointerdown",e=>{drawing=true;cv.setPointerCapture(e.pointerId);ctx.beginPath();ctx.moveTo(...pos(e))});
cv.addEventListener("pointermove",e=>{if(!drawing)return;ctx.lineWidth=22;ctx.lineCap="round";ctx.lineJoin="round";ctx.strokeStyle="#fff";ctx.lineTo(...pos(e));ctx.stroke()});
cv.addEventListener("pointerup",()=>{drawing=false});cv.addEventListener("pointercancel",()=>{drawing=false});
$("clear").onclick=()=>{clear();$("prediction").textContent="draw or upload";delete $("prediction").dataset.class;$("probs").innerHTML=""};
// MNIST's preparation: the ink's bounding box scaled into 20x20, centred by its centre of mass in 28x28
function digitPixels(){
 const d=ctx.getImageData(0,0,cv.width,cv.height).data;let x0=cv.width,y0=cv.height,x1=-1,y1=-1;
 for(let y=0;y<cv.height;y++)for(let x=0;x<cv.width;x++)if(d[4*(y*cv.width+x)]>20){x0=Math.min(x0,x);x1=Math.max(x1,x);y0=Math.min(y0,y);y1=Math.max(y1,y)}
 if(x1<0)return null;const w=x1-x0+1,h=y1-y0+1,k=20/Math.max(w,h);
 const small=document.createElement("canvas");small.width=small.height=28;const s=small.getContext("2d");
 s.fillStyle="#000";s.fillRect(0,0,28,28);s.imageSmoothingQuality="high";
 const dw=w*k,dh=h*k;s.drawImage(cv,x0,y0,w,h,(28-dw)/2,(28-dh)/2,dw,dh);
 let p=s.getImageData(0,0,28,28).data,m=0,cx=0,cy=0;
 for(let i=0;i<784;i++){const v=p[4*i];m+=v;cx+=v*(i%28);cy+=v*Math.floor(i/28)}
 const out=new Uint8Array(784),sx=Math.round(14-cx/m+0.5),sy=Math.round(14-cy/m+0.5);
 for(let y=0;y<28;y++)for(let x=0;x<28;x++){const X=x-sx,Y=y-sy;out[y*28+x]=X>=0&&X<28&&Y>=0&&Y<28?p[4*(Y*28+X)]:0}
 return out}
function showPrediction(p){
 $("prediction").textContent=`class ${p.predicted_class}: ${names[p.predicted_class]} (${(100*p.probabilities[p.predicted_class]).toFixed(1)}%)`;
 $("prediction").dataset.class=p.predicted_class;
 $("probs").innerHTML=p.probabilities.map((q,i)=>`<div><span>${esc(names[i])}</span><b style="width:${Math.round(200*q)}px"></b>${(100*q).toFixed(1)}%</div>`).join("")+
  `<div class="mute">model of round ${p.round}</div>`}
async function predict(body,type){
 try{showPrediction(await api("/api/v1/predict",{method:"POST",headers:{"content-type":type},body}))}
 catch(e){$("prediction").textContent="no prediction: "+e.message;delete $("prediction").dataset.class}}
$("predict-btn").onclick=()=>{const px=digitPixels();if(px)predict(px,"application/octet-stream");else $("prediction").textContent="draw something first"};
$("upload").onchange=async e=>{const f=e.target.files[0];if(f)predict(await f.arrayBuffer(),f.type||"application/octet-stream")};
refresh();setInterval(refresh,2000);
</script></body></html>
"""#
}
