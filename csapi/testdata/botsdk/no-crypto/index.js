// matrix-bot-sdk requires its crypto package when it is loaded, but uses
// it only when a crypto store is given. A bot of the façade gives none
// (its encryption is off), so any use here is a mistake: say so.
module.exports = new Proxy({}, {
    get(_, name) {
        if (typeof name === "symbol" || name === "__esModule" || name === "then") {
            return undefined;
        }
        throw new Error(`encryption is off: matrix-sdk-crypto-nodejs.${String(name)} is not available`);
    },
});
