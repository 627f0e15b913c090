//! The pages' one stylesheet, served by the router as `/static/app.css`
//! (the pages carry no inline style, as `PAGE_CSP` requires).

/// The stylesheet of every page.
pub const APP_CSS: &str = r#":root{--fg:#1b1f24;--muted:#5b6570;--line:#d8dde3;--accent:#0b5cad;--bg:#fff;--soft:#f4f6f8;--warn:#8a4b00}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
a{color:var(--accent)}
header.top{display:flex;flex-wrap:wrap;align-items:center;gap:1rem;padding:.5rem 1rem;border-bottom:1px solid var(--line);background:var(--soft)}
header.top .brand{font-weight:600;text-decoration:none;color:var(--fg)}
header.top nav ul{display:flex;gap:.75rem;list-style:none;margin:0;padding:0}
header.top nav a{text-decoration:none;padding:.25rem .5rem;border-radius:4px}
header.top nav a.active{background:var(--accent);color:#fff}
header.top .account{margin-left:auto;display:flex;align-items:center;gap:.5rem}
main{padding:1rem;max-width:1200px;margin:0 auto}
form label{display:inline-flex;flex-direction:column;gap:.15rem;margin:0 .75rem .5rem 0;font-size:.9em;color:var(--muted)}
input,select,button{font:inherit;padding:.3rem .5rem;border:1px solid var(--line);border-radius:4px}
button,.button{background:var(--accent);color:#fff;border-color:var(--accent);cursor:pointer;text-decoration:none;padding:.35rem .8rem;border-radius:4px;display:inline-block}
form.inline{display:inline-flex;gap:.25rem;margin:0}
form.signout button{background:transparent;color:var(--accent);border-color:var(--line)}
.search-form label.q input{min-width:24rem}
.results-layout{display:flex;gap:1.5rem;align-items:flex-start}
.facets{min-width:12rem;font-size:.9em}
.facets h2{font-size:1em;margin:.75rem 0 .25rem}
.facets ul{list-style:none;margin:0;padding:0}
.facets .active{font-weight:600}
.count{color:var(--muted);font-size:.85em}
.results{flex:1;min-width:0}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid var(--line);vertical-align:top}
td.date{white-space:nowrap}
td.subject{word-break:break-word}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}
.paging{display:flex;gap:1rem;margin:1rem 0}
.error{color:#a40000}
.notice{color:var(--warn);background:#fff6e5;padding:.4rem .6rem;border-radius:4px}
.empty{color:var(--muted)}
dl.headers{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:0 0 1rem}
dl.headers dt{color:var(--muted)}
dl.headers dd{margin:0;word-break:break-word}
iframe.message-body{width:100%;min-height:60vh;border:1px solid var(--line);border-radius:4px;background:#fff}
.attachments ul,.conversation ol{padding-left:1.2rem}
.meta{color:var(--muted);font-size:.85em}
.conversation .current{font-weight:600}
.tree ul{list-style:none;padding-left:1.1rem;margin:.1rem 0}
.signin{max-width:26rem;margin:3rem auto}
.signin form label{display:flex;margin-right:0}
form.create{margin:1rem 0;padding:.75rem;border:1px solid var(--line);border-radius:4px}
"#;
