document.getElementById("login").addEventListener("submit", async (e) => {
  e.preventDefault();
  const error = document.getElementById("error");
  error.textContent = "";
  try {
    const who = await Centralino.login(document.getElementById("user").value, document.getElementById("password").value);
    const next = new URLSearchParams(location.search).get("next");
    const home = who.role === "agent" ? "/agent" : "/wallboard";
    location.href = next && next.startsWith("/") && !next.startsWith("//") ? next : home;
  } catch (err) { error.textContent = err.message; }
});
